//! Encryption at rest of the API's objects, as kube-apiserver's `--encryption-provider-config` does it: an
//! `EncryptionConfiguration` file (YAML or JSON) names, per resource, an ordered list of providers. The first
//! one seals what is written; every one of them can open what is read. Providers: `aesgcm` (AES-GCM with
//! 128- or 256-bit keys, each named) and `identity` (stored as is).
//!
//! A sealed value is `k8s:enc:aesgcm:v1:<key name>:` followed by a random 12-byte nonce and the AES-GCM
//! ciphertext and tag, with the object's store key as the authenticated data (a sealed value moved to another
//! key does not open). A value without that prefix is plaintext: it opens only if `identity` is among the
//! resource's providers. Rotating a key: put the new key first, keep the old one second, restart the replicas,
//! then rewrite every object (`kubectl get secrets -A -o json | kubectl replace -f -`) and drop the old key.
//!
//! Architecture invariant: the API seals every value it writes under an encrypted resource's keys before it
//! leaves for the store, so the Raft log, the state machine, snapshots and the etcd API hold only ciphertext
//! of it; the etcd API never opens anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;

use crate::apis::catalog;

/// What every sealed value starts with, before the key's name.
const AESGCM_PREFIX: &str = "k8s:enc:aesgcm:v1:";
/// Any provider's prefix: a value that starts so and matches no provider is refused, never taken as plain.
const ENCRYPTED_PREFIX: &str = "k8s:enc:";

#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not an EncryptionConfiguration: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("the value of {key} is encrypted with {what}, which the encryption configuration does not have")]
    UnknownKey { key: String, what: String },
    #[error("the value of {key} does not decrypt with key {name}: wrong key, or the value was altered")]
    Corrupt { key: String, name: String },
    #[error("the value of {key} is stored unencrypted, and its resource's providers have no identity to read it")]
    Plaintext { key: String },
}

/// The configuration file's shape (apiserver.config.k8s.io/v1 EncryptionConfiguration).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigFile {
    api_version: String,
    kind: String,
    resources: Vec<ResourceRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceRule {
    resources: Vec<String>,
    providers: Vec<ProviderFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderFile {
    aesgcm: Option<KeysFile>,
    identity: Option<serde_json::Value>,
    aescbc: Option<serde_json::Value>,
    secretbox: Option<serde_json::Value>,
    kms: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<KeyFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    name: String,
    secret: String,
}

/// One provider of a resource.
enum Provider {
    /// AES-GCM keys by name, the first one sealing when this provider is first.
    AesGcm(Vec<(String, LessSafeKey)>),
    Identity,
}

/// The providers of one resource, in order.
struct Rule {
    providers: Vec<Provider>,
}

/// What the API seals and opens: per store key prefix, the providers.
pub struct Encryption {
    /// Store key prefixes (`/registry/<plural>/`) with their providers.
    rules: Vec<(String, Rule)>,
    random: SystemRandom,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefixes: Vec<&str> = self.rules.iter().map(|(p, _)| p.as_str()).collect();
        f.debug_struct("Encryption").field("prefixes", &prefixes).finish()
    }
}

impl Encryption {
    /// Nothing encrypted: every value is stored as is.
    pub fn none() -> Encryption {
        Encryption { rules: Vec::new(), random: SystemRandom::new() }
    }

    /// The configuration in `path`.
    pub fn load(path: &Path) -> Result<Encryption, EncryptionError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| EncryptionError::Read { path: path.to_owned(), source })?;
        Encryption::parse(&text).map_err(|reason| EncryptionError::Config { path: path.to_owned(), reason })
    }

    /// A configuration's text (YAML, or JSON).
    pub fn parse(text: &str) -> Result<Encryption, String> {
        let file: ConfigFile = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        if file.kind != "EncryptionConfiguration" || file.api_version != "apiserver.config.k8s.io/v1" {
            return Err(format!(
                "kind {:?} of {:?}, expected EncryptionConfiguration of apiserver.config.k8s.io/v1",
                file.kind, file.api_version
            ));
        }
        let mut rules: Vec<(String, Rule)> = Vec::new();
        for rule in file.resources {
            if rule.providers.is_empty() {
                return Err(format!("{:?} has no providers", rule.resources));
            }
            for name in &rule.resources {
                for prefix in prefixes(name)? {
                    // As upstream: a resource named again later is governed by its first rule.
                    if !rules.iter().any(|(p, _)| *p == prefix) {
                        rules.push((prefix, Rule { providers: providers(&rule.providers)? }));
                    }
                }
            }
        }
        Ok(Encryption { rules, random: SystemRandom::new() })
    }

    fn rule(&self, key: &str) -> Option<&Rule> {
        self.rules.iter().find(|(prefix, _)| key.starts_with(prefix.as_str())).map(|(_, rule)| rule)
    }

    /// Whether values under `key` are encrypted when written.
    pub fn seals(&self, key: &str) -> bool {
        self.rule(key).is_some_and(|r| matches!(r.providers.first(), Some(Provider::AesGcm(_))))
    }

    /// `value` as it is to be stored under `key`.
    pub fn seal(&self, key: &str, value: Vec<u8>) -> Vec<u8> {
        let Some(Provider::AesGcm(keys)) = self.rule(key).and_then(|r| r.providers.first()) else { return value };
        let (name, sealing) = &keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).expect("the system's random source works");
        let mut body = value;
        sealing
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(key.as_bytes()), &mut body)
            .expect("AES-GCM seals any value this size");
        let mut sealed = format!("{AESGCM_PREFIX}{name}:").into_bytes();
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&body);
        sealed
    }

    /// Whether `stored` (the value under `key`) is sealed otherwise than `seal` would seal it now: with another
    /// key than the first, or sealed where it would be stored as is, or the reverse.
    pub fn is_stale(&self, key: &str, stored: &[u8]) -> bool {
        match self.rule(key).and_then(|r| r.providers.first()) {
            Some(Provider::AesGcm(keys)) => !stored.starts_with(format!("{AESGCM_PREFIX}{}:", keys[0].0).as_bytes()),
            Some(Provider::Identity) | None => stored.starts_with(ENCRYPTED_PREFIX.as_bytes()),
        }
    }

    /// The value stored under `key`, opened.
    pub fn open(&self, key: &str, stored: Vec<u8>) -> Result<Vec<u8>, EncryptionError> {
        if !stored.starts_with(ENCRYPTED_PREFIX.as_bytes()) {
            return match self.rule(key) {
                Some(rule) if !rule.providers.iter().any(|p| matches!(p, Provider::Identity)) => {
                    Err(EncryptionError::Plaintext { key: key.to_owned() })
                }
                _ => Ok(stored),
            };
        }
        let unknown = |what: String| EncryptionError::UnknownKey { key: key.to_owned(), what };
        let Some(rest) = stored.strip_prefix(AESGCM_PREFIX.as_bytes()) else {
            let provider = stored.splitn(4, |b| *b == b':').nth(2).unwrap_or_default();
            return Err(unknown(format!("provider {:?}", String::from_utf8_lossy(provider))));
        };
        let Some(colon) = rest.iter().position(|b| *b == b':') else {
            return Err(unknown("an unnamed aesgcm key".into()));
        };
        let name = String::from_utf8_lossy(&rest[..colon]).into_owned();
        let opening = self.rule(key).into_iter().flat_map(|r| &r.providers).find_map(|p| match p {
            Provider::AesGcm(keys) => keys.iter().find(|(n, _)| *n == name).map(|(_, k)| k),
            Provider::Identity => None,
        });
        let Some(opening) = opening else { return Err(unknown(format!("aesgcm key {name:?}"))) };
        let sealed = &rest[colon + 1..];
        let corrupt = || EncryptionError::Corrupt { key: key.to_owned(), name: name.clone() };
        if sealed.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[..NONCE_LEN]).map_err(|_| corrupt())?;
        let mut body = sealed[NONCE_LEN..].to_vec();
        let plain = opening.open_in_place(nonce, Aad::from(key.as_bytes()), &mut body).map_err(|_| corrupt())?;
        Ok(plain.to_vec())
    }
}

/// The store key prefixes a configuration's resource name covers: `secrets` (the core group), `<plural>.<group>`,
/// `*.<group>` (every resource of a group; `*.` for the core group) or `*.*`.
fn prefixes(name: &str) -> Result<Vec<String>, String> {
    let (plural, group) = name.split_once('.').unwrap_or((name, ""));
    let matching: Vec<String> = catalog::stored()
        .filter(|r| (plural == "*" || r.plural == plural) && (group == "*" || r.group == group))
        .map(|r| r.prefix(None))
        .collect();
    if matching.is_empty() {
        return Err(format!("{name:?} names no stored resource"));
    }
    Ok(matching)
}

fn providers(files: &[ProviderFile]) -> Result<Vec<Provider>, String> {
    files
        .iter()
        .map(|p| match (p.aesgcm.as_ref(), p.identity.is_some()) {
            (Some(keys), false) => aesgcm_keys(keys).map(Provider::AesGcm),
            (None, true) => Ok(Provider::Identity),
            _ if p.aescbc.is_some() || p.secretbox.is_some() || p.kms.is_some() => {
                Err("only the aesgcm and identity providers are supported".into())
            }
            _ => Err("each provider names exactly one of aesgcm and identity".into()),
        })
        .collect()
}

fn aesgcm_keys(file: &KeysFile) -> Result<Vec<(String, LessSafeKey)>, String> {
    if file.keys.is_empty() {
        return Err("an aesgcm provider needs at least one key".into());
    }
    let mut names = BTreeMap::new();
    file.keys
        .iter()
        .map(|k| {
            if k.name.is_empty() || k.name.contains(':') || names.insert(k.name.clone(), ()).is_some() {
                return Err(format!("aesgcm key names must be unique, non-empty and without ':' ({:?})", k.name));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(k.secret.trim())
                .map_err(|e| format!("key {:?}: the secret is not base64: {e}", k.name))?;
            let algorithm = match bytes.len() {
                16 => &AES_128_GCM,
                32 => &AES_256_GCM,
                n => return Err(format!("key {:?} is {n} bytes; aesgcm keys are 16 or 32 bytes", k.name)),
            };
            let key = UnboundKey::new(algorithm, &bytes).map_err(|_| format!("key {:?} is unusable", k.name))?;
            Ok((k.name.clone(), LessSafeKey::new(key)))
        })
        .collect()
}

/// A configuration that encrypts Secrets with one new random 256-bit key named `name` (and still reads values
/// stored before encryption was on), as `raftsman up` writes it.
pub fn generate_config(name: &str) -> String {
    let mut key = [0u8; 32];
    SystemRandom::new().fill(&mut key).expect("the system's random source works");
    let secret = base64::engine::general_purpose::STANDARD.encode(key);
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    \
         providers:\n      - aesgcm:\n          keys:\n            - name: {name}\n              secret: {secret}\n      \
         - identity: {{}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(keys: &[(&str, &str)], identity: bool) -> String {
        let keys: Vec<String> =
            keys.iter().map(|(n, s)| format!("            - name: {n}\n              secret: {s}\n")).collect();
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    \
             providers:\n      - aesgcm:\n          keys:\n{}{}",
            keys.concat(),
            if identity { "      - identity: {}\n" } else { "" }
        )
    }

    const KEY1: &str = "c2VjcmV0IGlzIHNlY3VyZSwgbm90IGV4YWN0bHkhISE="; // 32 bytes
    const KEY2: &str = "dGhpcyBpcyBhbm90aGVyIDMyIGJ5dGUga2V5IS4uLi4="; // 32 bytes

    #[test]
    fn secrets_are_sealed_bound_to_their_key_and_opened_others_pass_through() {
        let encryption = Encryption::parse(&config(&[("k1", KEY1)], true)).unwrap();
        let key = "/registry/secrets/default/db";
        let sealed = encryption.seal(key, b"{\"data\":{\"password\":\"aHVudGVyMg==\"}}".to_vec());
        assert!(sealed.starts_with(b"k8s:enc:aesgcm:v1:k1:"), "{sealed:?}");
        assert!(!sealed.windows(8).any(|w| w == b"password"));
        assert!(encryption.seals(key) && !encryption.seals("/registry/configmaps/default/db"));
        assert_eq!(encryption.open(key, sealed.clone()).unwrap(), b"{\"data\":{\"password\":\"aHVudGVyMg==\"}}");
        // Bound to its key: moved elsewhere, or altered, it does not open.
        assert!(matches!(
            encryption.open("/registry/secrets/default/other", sealed.clone()),
            Err(EncryptionError::Corrupt { .. })
        ));
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(matches!(encryption.open(key, altered), Err(EncryptionError::Corrupt { .. })));
        // Two seals of one value differ (a fresh nonce each).
        assert_ne!(encryption.seal(key, b"x".to_vec()), encryption.seal(key, b"x".to_vec()));
        // Other resources, and plaintext secrets with identity listed, pass through.
        assert_eq!(encryption.seal("/registry/configmaps/default/a", b"{}".to_vec()), b"{}");
        assert_eq!(encryption.open(key, b"{}".to_vec()).unwrap(), b"{}");
        assert_eq!(Encryption::none().seal(key, b"{}".to_vec()), b"{}");
    }

    #[test]
    fn rotation_reads_with_every_key_and_writes_with_the_first() {
        let key = "/registry/secrets/default/db";
        let old = Encryption::parse(&config(&[("k1", KEY1)], false)).unwrap();
        let sealed_old = old.seal(key, b"v".to_vec());
        let rotated = Encryption::parse(&config(&[("k2", KEY2), ("k1", KEY1)], false)).unwrap();
        assert_eq!(rotated.open(key, sealed_old.clone()).unwrap(), b"v");
        assert!(rotated.seal(key, b"v".to_vec()).starts_with(b"k8s:enc:aesgcm:v1:k2:"));
        assert!(rotated.is_stale(key, &sealed_old) && !old.is_stale(key, &sealed_old));
        assert!(!rotated.is_stale(key, &rotated.seal(key, b"v".to_vec())));
        assert!(rotated.is_stale(key, b"{}") && !Encryption::none().is_stale(key, b"{}"));
        assert!(Encryption::none().is_stale(key, &sealed_old), "sealed, where it would now be stored as is");
        let dropped = Encryption::parse(&config(&[("k2", KEY2)], false)).unwrap();
        let err = dropped.open(key, sealed_old).unwrap_err();
        assert!(err.to_string().contains("\"k1\""), "{err}");
        // Without identity, a plaintext secret is refused rather than trusted.
        assert!(matches!(dropped.open(key, b"{}".to_vec()), Err(EncryptionError::Plaintext { .. })));
        // A provider this configuration lacks.
        let err = dropped.open(key, b"k8s:enc:kms:v2:x:abc".to_vec()).unwrap_err();
        assert!(err.to_string().contains("kms"), "{err}");
    }

    #[test]
    fn bad_configurations_say_what_is_wrong() {
        let cases = [
            (config(&[("k1", "c2hvcnQ=")], true), "16 or 32 bytes"),
            (config(&[("k1", KEY1), ("k1", KEY2)], true), "unique"),
            (config(&[], true), "at least one key"),
            (config(&[("k1", KEY1)], true).replace("[secrets]", "[nothings]"), "names no stored resource"),
            (
                config(&[("k1", KEY1)], true).replace("EncryptionConfiguration", "Other"),
                "expected EncryptionConfiguration",
            ),
            (config(&[("k1", KEY1)], true).replace("aesgcm", "aescbc"), "only the aesgcm and identity"),
            ("not: [yaml".to_owned(), ""),
        ];
        for (text, expected) in cases {
            let err = Encryption::parse(&text).err().unwrap_or_else(|| panic!("accepted:\n{text}"));
            assert!(err.contains(expected), "{err}");
        }
        // The generated configuration parses and seals secrets.
        let generated = Encryption::parse(&generate_config("key1")).unwrap();
        assert!(generated.seals("/registry/secrets/kube-system/x"));
        // A group's wildcard covers its resources.
        let apps = config(&[("k1", KEY1)], false).replace("[secrets]", "[\"*.apps\"]");
        assert!(Encryption::parse(&apps).unwrap().seals("/registry/deployments/default/web"));
    }
}
