"""The box's TLS identity: its own internal CA, or a certificate the hospital issued.

Browsers reach the portal at `https://<box>/` inside the hospital network, where
no public CA can vouch for the name. So on first start the box makes its own
small CA and a server certificate signed by it; IT then tells the hospital's PCs
to trust that CA once (`trust_instructions`). Hospitals that run their own PKI
import their certificate instead (`import_certificate`), and the box never
replaces an imported certificate on its own: it belongs to the hospital's PKI,
and silently swapping it for a self-issued one would break every browser that
trusts only the hospital's CA. To go back to the box's own CA, delete
`imported.json` from the folder and restart.

Files in the folder (the data dir's `certs/`):

    ca.pem         internal CA certificate (0644: this is what clients trust)
    ca.key         internal CA private key (0600)
    server.pem     server certificate followed by its chain (0644)
    server.key     server private key (0600)
    imported.json  present only when server.pem was imported

Private keys are stored unencrypted: gunicorn must read them at an unattended
boot, and the data dir is the box's protected area (service user only).
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import logging
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.errors import ApplianceError

log = logging.getLogger(__name__)

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
IMPORTED_MARKER = "imported.json"
LOCK_FILE = ".lock"
WORKER_UNIT = "worker"
"""The OU of worker client certificates: the internal API serves only these."""

ORGANISATION = "Enclave HR appliance"
CA_VALIDITY = timedelta(days=3650)
# Browsers (Apple, Chrome) reject leaf certificates valid for more than 398 days.
SERVER_VALIDITY = timedelta(days=397)
RENEW_BEFORE = timedelta(days=30)
# Backdate notBefore so a client whose clock runs a little behind the box's accepts it.
CLOCK_SKEW = timedelta(hours=1)
MIN_RSA_BITS = 2048
ALWAYS_INCLUDED = ("localhost", "127.0.0.1")

_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class CertificateError(ApplianceError):
    """A certificate or key cannot be made, read or used; the message says what to do."""

    exit_code = 2


@dataclass(frozen=True)
class ServerCertificate:
    """What the web server should serve, and what an operator should know about it."""

    cert_path: Path
    key_path: Path
    ca_path: Path | None
    fingerprint_sha256: str
    not_after: datetime
    hostnames: tuple[str, ...]
    imported: bool
    warning: str | None = None


def ensure_server_certificate(
    folder: Path, hostnames: Sequence[str], now: datetime | None = None
) -> ServerCertificate:
    """Make sure `folder` holds a server certificate the web server can start with.

    Called at every start so the box never serves an expired certificate: the
    first call creates the internal CA and a server certificate; later calls do
    nothing while the certificate covers `hostnames` for more than 30 days, and
    otherwise re-issue only the server certificate from the same CA, so clients
    that trust the CA keep working. An imported certificate is never replaced:
    it raises CertificateError once expired and carries a `warning` before.
    """
    now = _utc(now)
    wanted = _parse_hostnames([*hostnames, *ALWAYS_INCLUDED])
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _folder_lock(folder):
        if (folder / IMPORTED_MARKER).exists():
            # The hospital's CA rarely names localhost; only the configured names matter here.
            return _check_imported(folder, _parse_hostnames(hostnames), now)

        ca_cert, ca_key, ca_created = _load_or_create_ca(folder, now)
        if not ca_created:
            current = _load_issued_server_certificate(folder, ca_cert)
            if current is not None and _is_current(current, wanted, now):
                return _describe(folder, current, imported=False, warning=_ca_warning(ca_cert, now))

        cert, key = _issue_server_certificate(ca_cert, ca_key, wanted, now)
        _write_atomic(folder / SERVER_KEY, _private_pem(key), 0o600)
        _write_atomic(folder / SERVER_CERT, _pem(cert) + _pem(ca_cert), 0o644)
        log.info("issued server certificate valid until %s", cert.not_valid_after_utc.isoformat())
        return _describe(folder, cert, imported=False, warning=_ca_warning(ca_cert, now))


def import_certificate(
    folder: Path,
    cert_file: Path,
    key_file: Path,
    chain_file: Path | None = None,
    now: datetime | None = None,
) -> ServerCertificate:
    """Serve the hospital's own certificate instead of one from the box's CA.

    Everything is checked before anything is written, so a bad file never
    replaces a working certificate: the files parse, the key belongs to the
    certificate, it is valid now, and it is meant for TLS servers. `cert_file`
    may already hold the intermediates after the certificate; `chain_file` adds
    more. Only the certificates that actually form the chain are served.
    """
    now = _utc(now)
    certs = _read_certificates(cert_file, "certificate")
    leaf, pool = certs[0], certs[1:]
    if chain_file is not None:
        pool += _read_certificates(chain_file, "chain")
    key = _read_private_key(key_file)

    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CertificateError(
            f"the key in {key_file} is of a type browsers do not accept for TLS; "
            "ask for an RSA (2048 bits or more) or ECDSA certificate"
        )
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        raise CertificateError(
            f"the RSA key in {key_file} has only {key.key_size} bits; browsers need at least "
            f"{MIN_RSA_BITS}: ask the hospital CA for a new certificate"
        )
    if _public_bytes(key) != _cert_public_bytes(leaf):
        raise CertificateError(
            f"the key in {key_file} does not belong to the certificate in {cert_file}; "
            "use the key that was generated with this certificate's request"
        )
    _refuse_unusable(leaf, cert_file, now)
    chain, unused = _order_chain(leaf, pool)
    if chain_file is not None and not chain:
        raise CertificateError(
            f"no certificate in {chain_file} issued the certificate in {cert_file} "
            f"(its issuer is {leaf.issuer.rfc4514_string()}); give the intermediate CA's file"
        )

    marker = {
        "subject": leaf.subject.rfc4514_string(),
        "issuer": leaf.issuer.rfc4514_string(),
        "not_after": leaf.not_valid_after_utc.isoformat(),
        "fingerprint_sha256": _fingerprint(leaf),
        "imported_at": now.isoformat(),
    }
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _folder_lock(folder):
        # Marker first: if we stop half-way, the next start must not overwrite the import.
        _write_atomic(folder / IMPORTED_MARKER, _json_bytes(marker), 0o644)
        _write_atomic(folder / SERVER_KEY, _private_pem(key), 0o600)
        _write_atomic(folder / SERVER_CERT, b"".join(_pem(c) for c in [leaf, *chain]), 0o644)
    log.info("imported server certificate %s", marker["fingerprint_sha256"])

    warnings = [w for w in [_expiry_warning(leaf, now)] if w]
    if unused:
        warnings.append(
            f"{len(unused)} certificate(s) in the files given are not part of the chain "
            "and were left out"
        )
    return _describe(folder, leaf, imported=True, warning="; ".join(warnings) or None)


def trust_instructions(ca_path: Path) -> str:
    """Tell hospital IT how to make browsers trust the box's internal CA.

    Without this every browser warns on the portal, and staff learn to click
    through certificate warnings. The fingerprint lets IT check that the file
    they roll out is the box's CA and not one swapped on the way.
    """
    ca = _read_certificates(ca_path, "CA certificate")[0]
    fingerprint = _fingerprint(ca)
    name = ca_path.name
    return f"""\
Trust the Enclave HR internal CA so browsers accept https://<box>/ without warnings.

CA certificate: {ca_path}
Subject:        {ca.subject.rfc4514_string()}
Valid until:    {ca.not_valid_after_utc:%Y-%m-%d}
SHA-256 fingerprint:
  {fingerprint}
  (certutil shows it as {fingerprint.replace(":", "").lower()})
Copy only {name}, never ca.key. Before trusting the copy on a machine, check that
it shows this fingerprint (Windows: certutil -dump {name};
elsewhere: openssl x509 -in {name} -noout -fingerprint -sha256).

Windows, one PC (administrator command prompt):
  certutil -addstore -f Root {name}
Windows, whole domain (Group Policy):
  Computer Configuration > Policies > Windows Settings > Security Settings >
  Public Key Policies > Trusted Root Certification Authorities > Import {name}

Debian / Ubuntu:
  sudo cp {name} /usr/local/share/ca-certificates/enclave-hr-ca.crt
  sudo update-ca-certificates
  (the file name must end in .crt)

macOS:
  sudo security add-trusted-cert -d -r trustRoot \\
      -k /Library/Keychains/System.keychain {name}

Firefox (keeps its own list):
  Windows and macOS: enterprise policy "Certificates": {{"ImportEnterpriseRoots": true}}
  (or about:config security.enterprise_roots.enabled = true) to use the system list.
  Linux, or one profile: Settings > Privacy & Security > Certificates >
  View Certificates > Authorities > Import {name}, tick "Trust this CA to identify websites".
"""


# --- the internal CA -------------------------------------------------------


def _load_or_create_ca(
    folder: Path, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bool]:
    cert_path, key_path = folder / CA_CERT, folder / CA_KEY
    if not cert_path.exists() and not key_path.exists():
        new_cert, new_key = _create_ca(now)
        _write_atomic(key_path, _private_pem(new_key), 0o600)
        _write_atomic(cert_path, _pem(new_cert), 0o644)
        log.info("created internal CA %s", new_cert.subject.rfc4514_string())
        return new_cert, new_key, True
    if not cert_path.exists() or not key_path.exists():
        # Never mint a new CA next to half of an old one: clients trust the old one.
        missing = cert_path if not cert_path.exists() else key_path
        raise CertificateError(
            f"{missing} is missing but its partner is there; restore it from backup, or move "
            f"{CA_CERT} and {CA_KEY} away to make a new CA (every client must then trust it again)"
        )
    cert = _read_certificates(cert_path, "CA certificate")[0]
    key = _read_private_key(key_path)
    matches = _public_bytes(key) == _cert_public_bytes(cert)
    if not matches or not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(
            f"{key_path} does not belong to {cert_path}; restore both from the same backup"
        )
    if cert.not_valid_after_utc <= now:
        raise CertificateError(
            f"the box's internal CA in {cert_path} expired on "
            f"{cert.not_valid_after_utc:%Y-%m-%d}; move {CA_CERT} and {CA_KEY} away and "
            "restart to make a new CA, then have every client trust the new one"
        )
    return cert, key, False


def _create_ca(now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    # A short random id tells apart the CAs of several boxes in a trust store.
    name = x509.Name(
        [
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"Enclave HR internal CA {secrets.token_hex(4)}"
            ),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
        ]
    )
    not_before = now - CLOCK_SKEW
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _ca_warning(ca: x509.Certificate, now: datetime) -> str | None:
    if ca.not_valid_after_utc - now > RENEW_BEFORE:
        return None
    return (
        f"the box's internal CA expires on {ca.not_valid_after_utc:%Y-%m-%d}; plan a new CA "
        f"(move {CA_CERT} and {CA_KEY} away and restart) and have clients trust it"
    )


# --- the server certificate ------------------------------------------------


def _issue_server_certificate(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: list[x509.GeneralName],
    now: datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    not_before = now - CLOCK_SKEW
    # A leaf must not outlive its CA: clients would reject it from that day on.
    not_after = min(not_before + SERVER_VALIDITY, ca.not_valid_after_utc)
    primary = next((n.value for n in names if isinstance(n, x509.DNSName)), "localhost")
    subject = x509.Name(
        [
            # CN is limited to 64 characters; browsers only read the SAN anyway.
            x509.NameAttribute(
                NameOID.COMMON_NAME, primary if len(primary) <= 64 else ORGANISATION
            ),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
        ]
    )
    try:
        ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _load_issued_server_certificate(folder: Path, ca: x509.Certificate) -> x509.Certificate | None:
    """The current server certificate if it is ours and usable as is; None means re-issue."""
    cert_path, key_path = folder / SERVER_CERT, folder / SERVER_KEY
    if not cert_path.exists() or not key_path.exists():
        return None
    try:
        cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        # Damaged, or left over from another CA: a fresh one from our CA replaces it.
        return None
    if _public_bytes(key) != _cert_public_bytes(cert):
        return None
    return cert


def _is_current(cert: x509.Certificate, wanted: list[x509.GeneralName], now: datetime) -> bool:
    if cert.not_valid_before_utc > now or cert.not_valid_after_utc - now <= RENEW_BEFORE:
        return False
    return not _uncovered(cert, wanted)


# --- worker client certificates ---------------------------------------------


@dataclass(frozen=True)
class WorkerCredentials:
    """What a worker host needs to reach the box's internal API (scale-out)."""

    name: str
    cert_path: Path
    key_path: Path
    ca_path: Path
    fingerprint_sha256: str
    not_after: datetime


def issue_worker_certificate(
    folder: Path, name: str, out_dir: Path, now: datetime | None = None
) -> WorkerCredentials:
    """Issue a client certificate for the worker host `name` from the box's internal CA.

    Writes `<name>.pem`, `<name>.key` (0600) and the CA's `ca.pem` into `out_dir`, to be
    copied to the worker host (the workers role). The certificate names the host in its
    CN and carries OU=worker and only the clientAuth usage, so it cannot serve TLS and
    the internal API can tell a worker from any other certificate of the CA. Revoking a
    worker means making a new CA: keep `out_dir` as protected as the host itself.
    """
    now = _utc(now)
    label = _dns_name(name, name.strip().lower())
    if "." in label:
        raise CertificateError(f"{name!r}: a worker name is one label (e.g. gpu-worker-1)")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _folder_lock(folder):
        ca_cert, ca_key, _created = _load_or_create_ca(folder, now)
    cert, key = _issue_client_certificate(ca_cert, ca_key, label, now)
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    creds = WorkerCredentials(
        name=label,
        cert_path=out_dir / f"{label}.pem",
        key_path=out_dir / f"{label}.key",
        ca_path=out_dir / CA_CERT,
        fingerprint_sha256=_fingerprint(cert),
        not_after=cert.not_valid_after_utc,
    )
    _write_atomic(creds.key_path, _private_pem(key), 0o600)
    _write_atomic(creds.cert_path, _pem(cert) + _pem(ca_cert), 0o644)
    _write_atomic(creds.ca_path, _pem(ca_cert), 0o644)
    log.info("issued worker certificate for %s until %s", label, creds.not_after.isoformat())
    return creds


def worker_name_of(cert_pem: str) -> str | None:
    """The worker name in a client certificate of ours, or None if it is not a worker's.

    The TLS layer has already checked that the box's CA issued it; this refuses the
    CA's other certificates (the server's) that a stolen server key could present.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages or not units or not names:
        return None
    if units[0].value != WORKER_UNIT:
        return None
    return str(names[0].value)


def _issue_client_certificate(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, name: str, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    not_before = now - CLOCK_SKEW
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, WORKER_UNIT),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(min(not_before + SERVER_VALIDITY, ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


# --- imported certificates -------------------------------------------------


def _check_imported(
    folder: Path, wanted: list[x509.GeneralName], now: datetime
) -> ServerCertificate:
    cert_path, key_path = folder / SERVER_CERT, folder / SERVER_KEY
    redo = (
        f"run `appliance certs import` again, or delete {folder / IMPORTED_MARKER} "
        "to go back to the box's own CA"
    )
    if not cert_path.exists() or not key_path.exists():
        raise CertificateError(
            f"the imported certificate or its key is missing from {folder}; {redo}"
        )
    cert = _read_certificates(cert_path, "certificate")[0]
    key = _read_private_key(key_path)
    if _public_bytes(key) != _cert_public_bytes(cert):
        raise CertificateError(f"{key_path} does not belong to {cert_path}; {redo}")
    if cert.not_valid_after_utc <= now:
        raise CertificateError(
            f"the imported certificate in {cert_path} expired on "
            f"{cert.not_valid_after_utc:%Y-%m-%d}; ask the hospital CA for a renewed one and "
            f"{redo}"
        )
    if cert.not_valid_before_utc > now:
        raise CertificateError(
            f"the imported certificate in {cert_path} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; check the box's clock"
        )
    warnings = [w for w in [_expiry_warning(cert, now)] if w]
    missing = _uncovered(cert, wanted)
    if missing:
        warnings.append(
            f"the imported certificate does not name {', '.join(missing)}; browsers that use "
            "those names will warn"
        )
    return _describe(folder, cert, imported=True, warning="; ".join(warnings) or None)


def _refuse_unusable(cert: x509.Certificate, cert_file: Path, now: datetime) -> None:
    if cert.not_valid_after_utc <= now:
        raise CertificateError(
            f"the certificate in {cert_file} expired on {cert.not_valid_after_utc:%Y-%m-%d}; "
            "ask the hospital CA for a renewed one"
        )
    if cert.not_valid_before_utc > now:
        raise CertificateError(
            f"the certificate in {cert_file} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; check the box's clock, or import "
            "it from that time on"
        )
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca:
        raise CertificateError(
            f"{cert_file} holds a CA certificate, not a server certificate; give the certificate "
            "issued for the box's host name"
        )
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.SERVER_AUTH not in usages:
        raise CertificateError(
            f"the certificate in {cert_file} is not meant for web servers (its extended key "
            "usage lacks serverAuth); ask the hospital CA for a TLS server certificate"
        )


def _order_chain(
    leaf: x509.Certificate, pool: list[x509.Certificate]
) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """Sort the given CA certificates into leaf -> root order; return it and the rest."""
    chain: list[x509.Certificate] = []
    remaining = list(pool)
    current = leaf
    while remaining and current.issuer != current.subject:
        issuer = next((c for c in remaining if _issued_by(current, c)), None)
        if issuer is None:
            break
        chain.append(issuer)
        remaining.remove(issuer)
        current = issuer
    return chain, remaining


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _expiry_warning(cert: x509.Certificate, now: datetime) -> str | None:
    left = cert.not_valid_after_utc - now
    if left > RENEW_BEFORE:
        return None
    return (
        f"the imported certificate expires on {cert.not_valid_after_utc:%Y-%m-%d} "
        f"({left.days} days left); import a renewed one with `appliance certs import`"
    )


# --- names -----------------------------------------------------------------


def _parse_hostnames(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    """IP literals become IPAddress entries, the rest DNSName; duplicates dropped, order kept."""
    names: list[x509.GeneralName] = []
    for raw in hostnames:
        text = raw.strip().strip("[]").rstrip(".").lower()
        name: x509.GeneralName
        try:
            name = x509.IPAddress(ipaddress.ip_address(text))
        except ValueError:
            name = x509.DNSName(_dns_name(raw, text))
        if name not in names:
            names.append(name)
    return names


def _dns_name(raw: str, text: str) -> str:
    try:
        # Certificates carry internationalised names in their ASCII (punycode) form.
        ascii_name = text.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_name = ""
    labels = ascii_name.split(".")
    if labels and labels[0] == "*":
        labels = labels[1:]
    if not ascii_name or len(ascii_name) > 253 or not all(_DNS_LABEL.match(x) for x in labels):
        raise CertificateError(
            f"{raw!r} is neither a host name nor an IP address; fix the box's host names setting"
        )
    return ascii_name


def _uncovered(cert: x509.Certificate, wanted: list[x509.GeneralName]) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [str(n.value) for n in wanted]
    dns = [d.lower() for d in san.get_values_for_type(x509.DNSName)]
    ips = san.get_values_for_type(x509.IPAddress)
    missing = []
    for name in wanted:
        if isinstance(name, x509.IPAddress):
            if name.value not in ips:
                missing.append(str(name.value))
        elif not any(_dns_matches(pattern, name.value) for pattern in dns):
            missing.append(name.value)
    return missing


def _dns_matches(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    # RFC 6125 6.4.3: a wildcard stands for exactly one left-most label.
    if pattern.startswith("*.") and "." in host:
        return host.split(".", 1)[1] == pattern[2:]
    return False


def _san_strings(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return (*dns, *ips)


# --- files and encodings ---------------------------------------------------


def _describe(
    folder: Path, cert: x509.Certificate, *, imported: bool, warning: str | None
) -> ServerCertificate:
    if warning:
        log.warning("%s", warning)
    return ServerCertificate(
        cert_path=folder / SERVER_CERT,
        key_path=folder / SERVER_KEY,
        ca_path=None if imported else folder / CA_CERT,
        fingerprint_sha256=_fingerprint(cert),
        not_after=cert.not_valid_after_utc,
        hostnames=_san_strings(cert),
        imported=imported,
        warning=warning,
    )


def _read_certificates(path: Path, what: str) -> list[x509.Certificate]:
    data = _read(path, what)
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        pass
    try:
        # Windows CAs often hand out DER (.cer); accept it rather than send IT to openssl.
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise CertificateError(
            f"{path} does not hold a {what} in PEM (-----BEGIN CERTIFICATE-----) or DER form"
        ) from None


def _read_private_key(path: Path) -> PrivateKeyTypes:
    data = _read(path, "private key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertificateError(
            f"the key in {path} is protected by a passphrase; the web server must start "
            "unattended, so export it without one (openssl pkey -in KEY -out plain.key)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        pass
    try:
        return serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CertificateError(
            f"{path} does not hold a private key in PEM (-----BEGIN PRIVATE KEY-----) or DER form"
        ) from None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"cannot read the {what} file {path}: {exc.strerror}") from None


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` whole, so a crash or a reader never sees half a key or certificate."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # Created with its final mode: a private key is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits away from 0644
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """One writer at a time: two starting processes must not each mint a CA."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _private_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_bytes(key: PrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _cert_public_bytes(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _json_bytes(value: dict[str, str]) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
