"""Reading Thermocline's encrypted lake from Python: a KMS client for pyarrow's CryptoFactory.

Our writer stores each file's data keys wrapped under master keys, as Parquet's key tools do with
internal key material and single wrapping (src/lake/parquet_crypt.h): key_metadata is KeyMaterial
JSON whose wrappedDEK is base64(nonce | AES-GCM ciphertext | tag) under the master key named by
masterKeyID, with that id as the AAD. A KMS client only has to unwrap that; pyarrow does the rest
(footer, column metadata, pages). The tests' KMS is a dict of master keys: a real deployment's
client would ask its KMS instead.
"""

import base64
import os

import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FOOTER_KEY = "lake-footer"
COLUMN_KEY = "lake-personal"


def new_keys(*ids, size=32):
    return {i: os.urandom(size) for i in (ids or (FOOTER_KEY, COLUMN_KEY))}


def write_key_file(path, keys):
    """The documented key file: "KEY_ID: BASE64" lines, readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# master keys of the lake\n")
        for k, v in keys.items():
            f.write(f"{k}: {base64.b64encode(v).decode()}\n")
    return str(path)


class LakeKms(pe.KmsClient):
    """Unwraps data keys with the master keys it was given."""

    def __init__(self, keys):
        super().__init__()
        self.keys = keys

    def wrap_key(self, key_bytes, master_key_identifier):
        raise NotImplementedError("the tests only read")

    def unwrap_key(self, wrapped_key, master_key_identifier):
        raw = base64.b64decode(wrapped_key)
        master = self.keys[master_key_identifier]  # KeyError: this KMS lacks the key
        return AESGCM(master).decrypt(raw[:12], raw[12:], master_key_identifier.encode())


def decryption_properties(keys):
    factory = pe.CryptoFactory(lambda config: LakeKms(keys))
    return factory.file_decryption_properties(pe.KmsConnectionConfig(), pe.DecryptionConfiguration())


def read_table(path, keys, **kw):
    return pq.read_table(path, decryption_properties=decryption_properties(keys), **kw)
