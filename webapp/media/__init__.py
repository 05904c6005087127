"""The media service (aiohttp + aiortc, no Flask): WebRTC in, encrypted recordings out.

`service.py` answers the web app on a unix socket, `capture.py` writes received RTP
packets into an encrypted recording (`appliance/recordings.py`), `ice.py` keeps ICE
on host candidates inside a fixed UDP port range (issue 7, item 5).
"""
