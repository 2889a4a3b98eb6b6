"""A private certificate authority for the security tests, made with `cryptography`.

`Pki(dir)` writes a CA and issues certificates into dir: a server certificate for 127.0.0.1 and
localhost, client certificates, and the broken ones the negative tests need (expired, self-signed,
from another CA). Every file is PEM; keys are written mode 0600, as Thermocline requires of a
private key.
"""

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path, key):
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(path, cert):
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


class Pki:
    def __init__(self, directory, name="ca"):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder()
                     .subject_name(_name(f"thermocline test {name}"))
                     .issuer_name(_name(f"thermocline test {name}"))
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                  False, False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.ca_file = os.path.join(self.dir, f"{name}.crt")
        _write_cert(self.ca_file, self.cert)

    def issue(self, stem, cn, server=True, expired=False, self_signed=False):
        """Write stem.crt and stem.key; returns (cert path, key path)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        if expired:
            start, end = now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)
        else:
            start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)
        builder = (x509.CertificateBuilder()
                   .subject_name(_name(cn))
                   .issuer_name(_name(cn) if self_signed else self.cert.subject)
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(start)
                   .not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(
                       [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = builder.sign(key if self_signed else self.key, hashes.SHA256())
        crt, pem = os.path.join(self.dir, f"{stem}.crt"), os.path.join(self.dir, f"{stem}.key")
        _write_cert(crt, cert)
        _write_key(pem, key)
        return crt, pem
