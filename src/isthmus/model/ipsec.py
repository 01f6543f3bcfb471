"""Azure's IPsec vocabulary in strongSwan's words: one ipsecPolicy as an IKE and an ESP proposal, and the
offer of a connection without one (Azure Stack Hub's ECP384 first, then Azure's common defaults). Pure:
the gateway agent configures charon with it, the API writes a site's swanctl.conf with it.
"""

from __future__ import annotations

from typing import Protocol


class Policy(Protocol):
    """An ipsecPolicy: the document's (snake case) or the API's model, both read through these names."""

    @property
    def ike_encryption(self) -> str: ...
    @property
    def ike_integrity(self) -> str: ...
    @property
    def dh_group(self) -> str: ...
    @property
    def ipsec_encryption(self) -> str: ...
    @property
    def ipsec_integrity(self) -> str: ...
    @property
    def pfs_group(self) -> str: ...


IKE_ENCRYPTION = {"DES": "des", "DES3": "3des", "AES128": "aes128", "AES192": "aes192", "AES256": "aes256",
                  "GCMAES128": "aes128gcm16", "GCMAES256": "aes256gcm16"}  # fmt: skip
IKE_INTEGRITY = {"MD5": "md5", "SHA1": "sha1", "SHA256": "sha256", "SHA384": "sha384"}
# With an AEAD (GCM) IKE cipher the integrity names the PRF.
IKE_PRF = {"GCMAES128": "prfsha256", "GCMAES256": "prfsha384", "SHA384": "prfsha384", "SHA256": "prfsha256",
           "SHA1": "prfsha1", "MD5": "prfmd5"}  # fmt: skip
DH_GROUP = {"DHGroup1": "modp768", "DHGroup2": "modp1024", "DHGroup14": "modp2048", "DHGroup2048": "modp2048",
            "DHGroup24": "modp2048s256", "ECP256": "ecp256", "ECP384": "ecp384"}  # fmt: skip
ESP_ENCRYPTION = {"None": "null", "DES": "des", "DES3": "3des", "AES128": "aes128", "AES192": "aes192",
                  "AES256": "aes256", "GCMAES128": "aes128gcm16", "GCMAES192": "aes192gcm16",
                  "GCMAES256": "aes256gcm16"}  # fmt: skip
ESP_INTEGRITY = {"MD5": "md5", "SHA1": "sha1", "SHA256": "sha256"}
PFS_GROUP = {"None": None, "PFS1": "modp768", "PFS2": "modp1024", "PFS14": "modp2048", "PFS2048": "modp2048",
             "PFS24": "modp2048s256", "ECP256": "ecp256", "ECP384": "ecp384", "PFSMM": None}  # fmt: skip

DEFAULT_IKE = ("aes256-sha384-ecp384", "aes256-sha256-modp2048", "aes256-sha1-modp1024", "aes128-sha256-modp2048",
               "aes128-sha1-modp1024", "3des-sha256-modp1024", "3des-sha1-modp1024")  # fmt: skip
DEFAULT_ESP = ("aes256gcm16-ecp384", "aes256gcm16", "aes256-sha256", "aes256-sha1", "aes128-sha1", "3des-sha1")
IKE_LIFETIME_S = 28800  # Azure's IKE SA lifetime
DEFAULT_ESP_LIFETIME_S = 27000  # Azure's quick-mode SA lifetime


def ike_proposal(policy: Policy) -> str:
    encryption = IKE_ENCRYPTION[policy.ike_encryption]
    dh = DH_GROUP.get(policy.dh_group)
    if dh is None:
        raise ValueError(f"dhGroup {policy.dh_group} cannot key an IKEv2 SA")
    if encryption.endswith("gcm16"):
        return f"{encryption}-{IKE_PRF[policy.ike_integrity]}-{dh}"
    return f"{encryption}-{IKE_INTEGRITY[policy.ike_integrity]}-{dh}"


def esp_proposal(policy: Policy) -> str:
    encryption = ESP_ENCRYPTION[policy.ipsec_encryption]
    parts = [encryption] if encryption.endswith("gcm16") else [encryption, ESP_INTEGRITY[policy.ipsec_integrity]]
    pfs = PFS_GROUP[policy.pfs_group]
    if pfs:
        parts.append(pfs)
    return "-".join(parts)
