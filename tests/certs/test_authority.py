"""The box's internal CA, its server certificate, and imported hospital certificates."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.authority import (
    CertificateError,
    ensure_server_certificate,
    import_certificate,
    trust_instructions,
)

HOSTNAMES = ["hr.hospital.example", "10.20.30.40"]
FILES = ("ca.pem", "ca.key", "server.pem", "server.key")


def _load_chain(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {n: ((folder / n).read_bytes(), (folder / n).stat().st_mtime_ns) for n in FILES}


# --- a stand-in for the hospital's PKI -------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _hospital_ca() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Hospital Issuing CA"))
        .issuer_name(_name("Hospital Issuing CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _hospital_leaf(
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey],
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.SERVER_AUTH,
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    ca_cert, ca_key = ca
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("hr.hospital.example"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=365))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("hr.hospital.example")]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _write_pair(
    folder: Path, cert: x509.Certificate, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    folder.mkdir(exist_ok=True)
    cert_file, key_file = folder / "hr.crt", folder / "hr.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


# --- the internal CA -------------------------------------------------------


def test_first_start_creates_ca_and_server_certificate(tmp_path: Path) -> None:
    """First start makes a CA and a server cert it signed, naming every host, keys 0600."""
    result = ensure_server_certificate(tmp_path, HOSTNAMES)

    ca = _load_chain(tmp_path / "ca.pem")[0]
    leaf, chained_ca = _load_chain(tmp_path / "server.pem")
    leaf.verify_directly_issued_by(ca)
    assert chained_ca == ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert ca.subject.rfc4514_string().startswith(
        "O=Enclave HR appliance,CN=Enclave HR internal CA"
    )
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= timedelta(days=397)
    usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]

    san = _san(leaf)
    assert set(san.get_values_for_type(x509.DNSName)) == {"hr.hospital.example", "localhost"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("10.20.30.40"),
        ipaddress.ip_address("127.0.0.1"),
    }
    for name, mode in [("ca.key", 0o600), ("server.key", 0o600), ("ca.pem", 0o644)]:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert not result.imported and result.warning is None
    assert result.ca_path == tmp_path / "ca.pem"
    assert result.not_after == leaf.not_valid_after_utc
    assert result.fingerprint_sha256 == leaf.fingerprint(hashes.SHA256()).hex(":").upper()


def test_second_start_changes_nothing(tmp_path: Path) -> None:
    """A second start with a valid certificate leaves every file untouched, bytes and mtimes."""
    first = ensure_server_certificate(tmp_path, HOSTNAMES)
    before = _snapshot(tmp_path)

    second = ensure_server_certificate(tmp_path, list(reversed(HOSTNAMES)))

    assert _snapshot(tmp_path) == before
    assert second == first


def test_near_expiry_reissues_server_certificate_from_same_ca(tmp_path: Path) -> None:
    """A server cert within 30 days of expiry is re-issued by the same CA; ca.pem stays."""
    ensure_server_certificate(tmp_path, HOSTNAMES)
    before = _snapshot(tmp_path)
    later = datetime.now(UTC) + timedelta(days=380)

    result = ensure_server_certificate(tmp_path, HOSTNAMES, now=later)

    after = _snapshot(tmp_path)
    assert after["ca.pem"] == before["ca.pem"] and after["ca.key"] == before["ca.key"]
    assert after["server.pem"][0] != before["server.pem"][0]
    assert after["server.key"][0] != before["server.key"][0]
    leaf = _load_chain(tmp_path / "server.pem")[0]
    leaf.verify_directly_issued_by(_load_chain(tmp_path / "ca.pem")[0])
    assert result.not_after > later + timedelta(days=360)


def test_new_hostname_reissues_server_certificate(tmp_path: Path) -> None:
    """Adding a host name re-issues the server cert to cover it, from the same CA."""
    ensure_server_certificate(tmp_path, HOSTNAMES)
    ca_before = (tmp_path / "ca.pem").read_bytes()

    result = ensure_server_certificate(tmp_path, [*HOSTNAMES, "hr2.hospital.example"])

    assert "hr2.hospital.example" in result.hostnames
    assert (tmp_path / "ca.pem").read_bytes() == ca_before


def test_malformed_hostname_is_refused(tmp_path: Path) -> None:
    """A host name that is neither DNS name nor IP is refused before anything is written."""
    with pytest.raises(CertificateError, match="neither a host name nor an IP address"):
        ensure_server_certificate(tmp_path, ["hr hospital"])
    assert not (tmp_path / "ca.pem").exists()


def test_missing_ca_key_is_not_silently_replaced(tmp_path: Path) -> None:
    """With ca.pem present but ca.key gone, no new CA is minted behind the clients' back."""
    ensure_server_certificate(tmp_path, HOSTNAMES)
    (tmp_path / "ca.key").unlink()

    with pytest.raises(CertificateError, match="ca.key is missing") as info:
        ensure_server_certificate(tmp_path, HOSTNAMES)
    assert info.value.exit_code == 2


# --- a real TLS handshake --------------------------------------------------


def _serve_once(server_ctx: ssl.SSLContext, listener: socket.socket) -> None:
    conn, _ = listener.accept()
    try:
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"ok")
    except (ssl.SSLError, OSError):
        pass  # the refusing client aborts the handshake; the client side is what we check


def _handshake(tmp_path: Path, client_ctx: ssl.SSLContext, server_name: str) -> bytes:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        thread = threading.Thread(target=_serve_once, args=(server_ctx, listener), daemon=True)
        thread.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=10) as raw:
                with client_ctx.wrap_socket(raw, server_hostname=server_name) as tls:
                    return tls.recv(2)
        finally:
            thread.join(timeout=10)


@pytest.mark.parametrize("server_name", ["localhost", "127.0.0.1", "hr.hospital.example"])
def test_tls_handshake_succeeds_with_only_the_ca_trusted(tmp_path: Path, server_name: str) -> None:
    """A client trusting only ca.pem, checking the host name, completes a real handshake."""
    ensure_server_certificate(tmp_path, HOSTNAMES)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(tmp_path / "ca.pem")

    assert _handshake(tmp_path, client_ctx, server_name) == b"ok"


def test_tls_handshake_fails_without_the_ca(tmp_path: Path) -> None:
    """A client that does not trust the box's CA refuses the server certificate."""
    ensure_server_certificate(tmp_path, HOSTNAMES)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)

    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tmp_path, client_ctx, "localhost")


# --- imported certificates -------------------------------------------------


def test_hospital_certificate_imports_with_its_chain(tmp_path: Path) -> None:
    """A hospital-issued cert with its key and chain is written as server.pem + server.key."""
    ca = _hospital_ca()
    leaf, key = _hospital_leaf(ca)
    cert_file, key_file = _write_pair(tmp_path / "given", leaf, key)
    chain_file = tmp_path / "given" / "chain.pem"
    chain_file.write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    folder = tmp_path / "certs"

    result = import_certificate(folder, cert_file, key_file, chain_file)

    assert _load_chain(folder / "server.pem") == [leaf, ca[0]]
    assert stat.S_IMODE((folder / "server.key").stat().st_mode) == 0o600
    assert result.imported and result.ca_path is None and result.warning is None
    assert result.hostnames == ("hr.hospital.example",)
    marker = (folder / "imported.json").read_text()
    assert result.fingerprint_sha256 in marker and "Hospital Issuing CA" in marker


def test_mismatched_key_is_refused(tmp_path: Path) -> None:
    """A key that does not belong to the certificate is refused, naming both files."""
    leaf, _ = _hospital_leaf(_hospital_ca())
    other_key = ec.generate_private_key(ec.SECP256R1())
    cert_file, key_file = _write_pair(tmp_path / "given", leaf, other_key)

    with pytest.raises(CertificateError) as info:
        import_certificate(tmp_path / "certs", cert_file, key_file)

    assert str(info.value).startswith(
        f"the key in {key_file} does not belong to the certificate in {cert_file}"
    )
    assert not (tmp_path / "certs" / "server.pem").exists()


def test_expired_certificate_is_refused(tmp_path: Path) -> None:
    """An expired hospital certificate is refused and nothing is written."""
    now = datetime.now(UTC)
    leaf, key = _hospital_leaf(
        _hospital_ca(), not_before=now - timedelta(days=400), not_after=now - timedelta(days=1)
    )
    cert_file, key_file = _write_pair(tmp_path / "given", leaf, key)

    with pytest.raises(CertificateError, match="expired on"):
        import_certificate(tmp_path / "certs", cert_file, key_file)
    assert not (tmp_path / "certs" / "imported.json").exists()


def test_certificate_without_server_auth_is_refused(tmp_path: Path) -> None:
    """A certificate whose extended key usage lacks serverAuth is refused."""
    leaf, key = _hospital_leaf(_hospital_ca(), usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    cert_file, key_file = _write_pair(tmp_path / "given", leaf, key)

    with pytest.raises(CertificateError, match="lacks serverAuth"):
        import_certificate(tmp_path / "certs", cert_file, key_file)


def test_passphrase_protected_key_is_refused(tmp_path: Path) -> None:
    """A key under a passphrase is refused: the web server must start unattended."""
    leaf, key = _hospital_leaf(_hospital_ca())
    cert_file, key_file = _write_pair(tmp_path / "given", leaf, key)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )

    with pytest.raises(CertificateError, match="protected by a passphrase"):
        import_certificate(tmp_path / "certs", cert_file, key_file)


def test_imported_certificate_is_never_replaced(tmp_path: Path) -> None:
    """After an import, starting the box keeps the hospital's certificate, even near expiry."""
    folder = tmp_path / "certs"
    ensure_server_certificate(folder, HOSTNAMES)
    leaf, key = _hospital_leaf(_hospital_ca())
    import_certificate(folder, *_write_pair(tmp_path / "given", leaf, key))
    imported = (folder / "server.pem").read_bytes(), (folder / "server.key").read_bytes()

    result = ensure_server_certificate(folder, ["hr.hospital.example"])
    soon = ensure_server_certificate(
        folder, ["hr.hospital.example"], now=leaf.not_valid_after_utc - timedelta(days=10)
    )

    assert ((folder / "server.pem").read_bytes(), (folder / "server.key").read_bytes()) == imported
    assert result.imported and result.warning is None
    assert soon.warning is not None and "expires on" in soon.warning
    with pytest.raises(CertificateError, match="imported certificate .* expired"):
        ensure_server_certificate(
            folder, ["hr.hospital.example"], now=leaf.not_valid_after_utc + timedelta(days=1)
        )
    assert ((folder / "server.pem").read_bytes(), (folder / "server.key").read_bytes()) == imported


# --- trust instructions ----------------------------------------------------


def test_trust_instructions_show_the_ca_fingerprint(tmp_path: Path) -> None:
    """The trust text carries the CA's SHA-256 fingerprint and each platform's command."""
    ensure_server_certificate(tmp_path, HOSTNAMES)
    ca = _load_chain(tmp_path / "ca.pem")[0]
    fingerprint = ca.fingerprint(hashes.SHA256()).hex(":").upper()

    text = trust_instructions(tmp_path / "ca.pem")

    assert fingerprint in text
    for command in ["certutil -addstore -f Root", "update-ca-certificates", "add-trusted-cert"]:
        assert command in text
    assert "Firefox" in text
