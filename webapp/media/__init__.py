"""The media service (aiohttp + aiortc, no Flask): WebRTC in, encrypted recordings out.

Until the interview issue lands this is a placeholder that `appliance run`
supervises like the real one: it listens on its unix socket and answers
`GET /health`, so the process layout, supervision and health checks are real.
"""
