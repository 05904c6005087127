"""Access policy (roles, scopes, field rules) and its one gate, the audit log, consent,
data-subject requests, retention, signed exports, bias audit, jurisdiction profiles.

Uses `appliance` only. Every read or write of personal data by the portal, the API,
exports and workers goes through the gate here (issue #3).
"""
