"""Local AI on interview media (issue #5): transcription, face signals, speech and content
signals, and the explained score report. Models load once per worker process."""
