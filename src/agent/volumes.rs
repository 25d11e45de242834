//! A pod's volumes on the node: each one is a directory under `<data dir>/volumes/<pod uid>/<volume name>`
//! (or, for `hostPath`, the host's path), which the runtime mounts where the containers' `volumeMounts` say.
//!
//! - `emptyDir`: an empty directory (mode 0777), on a tmpfs of its own with `medium: Memory` (its
//!   `sizeLimit` the tmpfs's size).
//! - `configMap`, `secret`, `downwardAPI`, `projected`: files computed by `payload` (pure: the keys or `items`,
//!   with their modes) from the objects and tokens `sources.rs` read, written as upstream's atomic writer writes them:
//!   the files in a hidden directory `..<time>`, a symlink `..data` to it, and a symlink per top-level entry
//!   into `..data`. An update writes a new hidden directory and renames a new `..data` over the old one, so a
//!   reader sees the old files or the new ones, never a mix. Secret volumes (and projected ones holding a
//!   secret or a token) live on a tmpfs, so their values are never written to the node's disk. Mounted
//!   read-only.
//! - `hostPath`: the host's path, checked or created as its `type` says.
//!
//! With the pod's `fsGroup`, every volume but `hostPath` belongs to that group, readable by it (and, for an
//! `emptyDir`, writable), as upstream sets volume ownership.
//!
//! `Volumes::prepare` keeps every volume of the pods being run as their sources say (a payload is written
//! only when it changed), and removes the directories of pods neither the API nor the runtime knows any more,
//! unmounting their tmpfs first. A volume that cannot be made keeps its pod's containers from starting:
//! waiting for an object not read yet, or with upstream's `MountVolume.SetUp failed` message.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, Volume};

use super::env::{field_value, resource_value};
use super::runtime::Mount;
use super::sources::{Kind, Missing, SourceKey, Sources};
use crate::apis::validation::parse_quantity;
use crate::limits;

/// The default mode of a volume's files, as upstream's.
const DEFAULT_MODE: u32 = 0o644;

/// A volume's files: path (relative, `/`-separated) to content and mode.
pub type Payload = BTreeMap<String, (Vec<u8>, u32)>;

/// What a volume is made of on the node.
#[derive(Debug, PartialEq)]
enum Made {
    /// A directory of the pod's, empty at first; on a tmpfs of this many bytes (0: no limit) if set.
    Empty { tmpfs: Option<u64> },
    /// Files written atomically; on a tmpfs when `secret`.
    Files { payload: Payload, secret: bool },
    /// A path of the host.
    Host { path: PathBuf, kind: String },
    /// A kind of volume this node does not make (a persistent volume claim, a cloud disk...).
    Unsupported(&'static str),
}

/// What a volume is made of, from the pod and the objects read (pure).
fn made_of(pod: &Pod, volume: &Volume, sources: &Sources) -> Result<Made, Missing> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    if let Some(empty) = &volume.empty_dir {
        let memory = empty.medium.as_deref() == Some("Memory");
        let size = empty.size_limit.as_ref().and_then(|q| parse_quantity(&q.0)).map_or(0, |b| b.max(0.0) as u64);
        return Ok(Made::Empty { tmpfs: memory.then_some(size) });
    }
    if let Some(host) = &volume.host_path {
        return Ok(Made::Host { path: PathBuf::from(&host.path), kind: host.type_.clone().unwrap_or_default() });
    }
    let mut payload = Payload::new();
    let mut secret = false;
    if let Some(c) = &volume.config_map {
        let mode = c.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        keyed(&mut payload, sources, (Kind::ConfigMap, namespace, &c.name), c.items.as_deref(), mode, c.optional)?;
    } else if let Some(s) = &volume.secret {
        let mode = s.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        let name = s.secret_name.as_deref().unwrap_or_default();
        keyed(&mut payload, sources, (Kind::Secret, namespace, name), s.items.as_deref(), mode, s.optional)?;
        secret = true;
    } else if let Some(d) = &volume.downward_api {
        let mode = d.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        downward(&mut payload, pod, d.items.as_deref().unwrap_or_default(), mode);
    } else if let Some(p) = &volume.projected {
        let mode = p.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        for source in p.sources.iter().flatten() {
            if let Some(c) = &source.config_map {
                keyed(
                    &mut payload,
                    sources,
                    (Kind::ConfigMap, namespace, &c.name),
                    c.items.as_deref(),
                    mode,
                    c.optional,
                )?;
            }
            if let Some(s) = &source.secret {
                keyed(&mut payload, sources, (Kind::Secret, namespace, &s.name), s.items.as_deref(), mode, s.optional)?;
                secret = true;
            }
            if let Some(d) = &source.downward_api {
                downward(&mut payload, pod, d.items.as_deref().unwrap_or_default(), mode);
            }
            if let Some(t) = &source.service_account_token {
                let token = sources.data(&SourceKey::token(pod, t))?.get("token").cloned().unwrap_or_default();
                payload.insert(t.path.clone(), (token, mode));
                secret = true;
            }
        }
    } else if volume.persistent_volume_claim.is_some() {
        return Ok(Made::Unsupported("persistentVolumeClaim"));
    } else {
        return Ok(Made::Unsupported("this kind of volume"));
    }
    Ok(Made::Files { payload, secret })
}

/// The files of a ConfigMap or Secret source: every key, or the `items` (a missing key is an error unless the
/// source is optional).
fn keyed(
    payload: &mut Payload,
    sources: &Sources,
    (kind, namespace, name): (Kind, &str, &str),
    items: Option<&[KeyToPath]>,
    mode: u32,
    optional: Option<bool>,
) -> Result<(), Missing> {
    let optional = optional.unwrap_or(false);
    let data = match sources.object(kind, namespace, name) {
        Ok(data) => data,
        Err(Missing::Absent(_)) if optional => return Ok(()),
        Err(missing) => return Err(missing),
    };
    match items {
        None => {
            for (key, value) in data {
                payload.insert(key.clone(), (value.clone(), mode));
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(value) => {
                        payload.insert(item.path.clone(), (value.clone(), item.mode.map_or(mode, |m| m as u32)));
                    }
                    None if optional => {}
                    None => {
                        return Err(Missing::Absent(match kind {
                            Kind::ConfigMap => format!("configmap references non-existent config key: {}", item.key),
                            Kind::Secret | Kind::Token => format!("references non-existent secret key: {}", item.key),
                        }))
                    }
                }
            }
        }
    }
    Ok(())
}

/// The files of a downward API source.
fn downward(payload: &mut Payload, pod: &Pod, items: &[DownwardAPIVolumeFile], mode: u32) {
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            field_value(pod, &field.field_path).unwrap_or_default()
        } else if let Some(resource) = &item.resource_field_ref {
            let containers = pod.spec.iter().flat_map(|s| &s.containers);
            let container = containers.into_iter().find(|c| Some(&c.name) == resource.container_name.as_ref());
            let divisor = resource.divisor.as_ref().map(|d| d.0.as_str());
            container.map(|c| resource_value(c, &resource.resource, divisor)).unwrap_or_default()
        } else {
            continue;
        };
        payload.insert(item.path.clone(), (value.into_bytes(), item.mode.map_or(mode, |m| m as u32)));
    }
}

/// Whether `pod`'s volumes are made (and their sources read): while it is neither being deleted nor finished.
pub fn made_for(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// Where the containers' `volumeMounts` put a pod's volumes, `root` being the pod's volume directory (pure).
pub fn mounts(pod: &Pod, container: &k8s_openapi::api::core::v1::Container, root: &Path) -> Vec<Mount> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    let volumes: HashMap<&str, &Volume> = volumes.map(|v| (v.name.as_str(), v)).collect();
    let mut out = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = volumes.get(mount.name.as_str()) else { continue };
        let (mut source, forced_read_only) = match &volume.host_path {
            Some(host) => (PathBuf::from(&host.path), false),
            None => {
                let files = volume.config_map.is_some()
                    || volume.secret.is_some()
                    || volume.downward_api.is_some()
                    || volume.projected.is_some();
                (root.join(&volume.name), files)
            }
        };
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if !relative_inside(sub) {
                continue;
            }
            source = source.join(sub);
        }
        out.push(Mount {
            host_path: source,
            container_path: mount.mount_path.clone(),
            read_only: forced_read_only || mount.read_only.unwrap_or(false),
        });
    }
    out
}

/// Whether `path` is relative and stays inside the directory it is joined to.
fn relative_inside(path: &str) -> bool {
    !path.is_empty() && Path::new(path).components().all(|c| matches!(c, Component::Normal(_)))
}

/// The volumes of the pods this agent runs.
#[derive(Clone)]
pub struct Volumes {
    root: PathBuf,
    /// The hash of what each volume was last made of, by pod uid and volume name.
    made: Arc<Mutex<HashMap<(String, String), u64>>>,
}

impl Volumes {
    pub fn new(root: PathBuf) -> Volumes {
        Volumes { root, made: Arc::default() }
    }

    /// Whether any pod's volumes are on the node.
    pub fn any(&self) -> bool {
        std::fs::read_dir(&self.root).is_ok_and(|mut entries| entries.next().is_some())
    }

    /// The directory of a pod's volumes.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join(uid)
    }

    /// Makes the volumes of `pods` as `sources` say, and removes those of pods not in `keep`. Returns, for each
    /// pod, why its volumes are not ready, if they are not. Blocking: call from a blocking thread.
    pub fn prepare(&self, pods: &[Arc<Pod>], sources: &Sources, keep: &HashSet<String>) -> HashMap<String, Missing> {
        let mut problems = HashMap::new();
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        for pod in pods {
            let Some(uid) = pod.metadata.uid.as_deref() else { continue };
            let fs_group = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()?.fs_group);
            let fs_group = fs_group.and_then(|g| u32::try_from(g).ok());
            for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
                let key = (uid.to_owned(), volume.name.clone());
                let result = made_of(pod, volume, sources).and_then(|what| {
                    let hash = hash_of(&what, fs_group);
                    if made.get(&key) != Some(&hash) {
                        self.make(uid, &volume.name, what, fs_group).map_err(|e| Missing::Absent(e.to_string()))?;
                        made.insert(key, hash);
                    }
                    Ok(())
                });
                let missing = match result {
                    Ok(()) => continue,
                    Err(Missing::Absent(m)) => {
                        let message = format!("MountVolume.SetUp failed for volume {:?} : {m}", volume.name);
                        tracing::debug!(pod = ?pod.metadata.name, %message, "agent: a volume is not ready");
                        Missing::Absent(message)
                    }
                    Err(Missing::Unread) => Missing::Unread,
                };
                problems.entry(uid.to_owned()).or_insert(missing);
            }
        }
        made.retain(|(uid, _), _| keep.contains(uid));
        drop(made);
        self.sweep(keep);
        problems
    }

    /// Makes one volume; with the pod's `fsGroup`, its files belong to that group.
    fn make(&self, uid: &str, name: &str, what: Made, fs_group: Option<u32>) -> std::io::Result<()> {
        let dir = self.pod_dir(uid).join(name);
        match what {
            Made::Empty { tmpfs } => {
                std::fs::create_dir_all(&dir)?;
                if let Some(size) = tmpfs {
                    mount_tmpfs(&dir, size)?;
                }
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
                fs_group.map_or(Ok(()), |gid| own(&dir, gid, false))
            }
            Made::Files { payload, secret } => {
                std::fs::create_dir_all(&dir)?;
                if secret {
                    mount_tmpfs(&dir, 0)?;
                }
                write_atomically(&dir, &payload)?;
                fs_group.map_or(Ok(()), |gid| own(&dir, gid, true))
            }
            Made::Host { path, kind } => host_path(&path, &kind),
            Made::Unsupported(what) => Err(std::io::Error::other(format!("{what} is not supported on this node"))),
        }
    }

    /// Removes the volume directories of pods not in `keep`.
    fn sweep(&self, keep: &HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return };
        for entry in entries.flatten() {
            let uid = entry.file_name().to_string_lossy().into_owned();
            if keep.contains(&uid) {
                continue;
            }
            if let Err(e) = remove_pod_dir(&entry.path()) {
                tracing::warn!(pod_uid = %uid, error = %e, "agent: removing a pod's volumes failed");
            } else {
                tracing::debug!(pod_uid = %uid, "agent: removed a pod's volumes");
            }
        }
    }
}

/// Gives `dir` and what it holds (never following a symlink) to group `gid`, readable by it (and writable,
/// unless `read_only`), directories set-group-id so that new files join the group: upstream's volume
/// ownership for `fsGroup`.
fn own(dir: &Path, gid: u32, read_only: bool) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    std::os::unix::fs::lchown(dir, None, Some(gid))?;
    let mut mask = if read_only { 0o440 } else { 0o660 };
    if meta.is_dir() {
        mask |= 0o2110;
        for entry in std::fs::read_dir(dir)? {
            own(&entry?.path(), gid, read_only)?;
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode((meta.permissions().mode() & 0o7777) | mask))
}

fn hash_of(made: &Made, fs_group: Option<u32>) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    fs_group.hash(&mut hasher);
    match made {
        Made::Empty { tmpfs } => (0u8, tmpfs).hash(&mut hasher),
        Made::Files { payload, secret } => (1u8, payload, secret).hash(&mut hasher),
        Made::Host { path, kind } => (2u8, path, kind).hash(&mut hasher),
        Made::Unsupported(what) => (3u8, what).hash(&mut hasher),
    }
    hasher.finish()
}

/// Whether `dir` is a mount point (on another device than its parent).
fn is_mount_point(dir: &Path) -> bool {
    let (Ok(own), Some(Ok(parent))) = (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) else {
        return false;
    };
    own.dev() != parent.dev()
}

/// Mounts a tmpfs on `dir` unless one is there; `size` 0 for the kernel's default.
fn mount_tmpfs(dir: &Path, size: u64) -> std::io::Result<()> {
    if is_mount_point(dir) {
        return Ok(());
    }
    let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
    let options = if size > 0 { format!("mode=0777,size={size}") } else { "mode=0777".to_owned() };
    let options = std::ffi::CString::new(options).map_err(std::io::Error::other)?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let done =
        unsafe { libc::mount(c"tmpfs".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), flags, options.as_ptr().cast()) };
    if done != 0 {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(e.kind(), format!("mounting a tmpfs (the agent needs CAP_SYS_ADMIN): {e}")));
    }
    Ok(())
}

/// Removes a pod's volume directory, unmounting the tmpfs of its volumes first; never follows a symlink.
fn remove_pod_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        if entry.file_type()?.is_dir() && is_mount_point(&path) {
            let target = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
            // SAFETY: a NUL-terminated path that outlives the call.
            if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    std::fs::remove_dir_all(dir)
}

/// Checks or makes a `hostPath` as its `type` says.
fn host_path(path: &Path, kind: &str) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let wrong = |what: &str| {
        Err(std::io::Error::other(format!("hostPath type check failed: {} is not a {what}", path.display())))
    };
    let meta = std::fs::metadata(path);
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            std::fs::create_dir_all(path)?;
            if !std::fs::metadata(path)?.is_dir() {
                return wrong("directory");
            }
            Ok(())
        }
        "FileOrCreate" => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            if !std::fs::metadata(path)?.is_file() {
                return wrong("file");
            }
            Ok(())
        }
        "Directory" => meta.ok().filter(|m| m.is_dir()).map_or_else(|| wrong("directory"), |_| Ok(())),
        "File" => meta.ok().filter(|m| m.is_file()).map_or_else(|| wrong("file"), |_| Ok(())),
        "Socket" => meta.ok().filter(|m| m.file_type().is_socket()).map_or_else(|| wrong("socket"), |_| Ok(())),
        "CharDevice" => {
            meta.ok().filter(|m| m.file_type().is_char_device()).map_or_else(|| wrong("character device"), |_| Ok(()))
        }
        "BlockDevice" => {
            meta.ok().filter(|m| m.file_type().is_block_device()).map_or_else(|| wrong("block device"), |_| Ok(()))
        }
        other => Err(std::io::Error::other(format!("unknown hostPath type {other:?}"))),
    }
}

/// The name of the symlink to the current files.
const DATA: &str = "..data";

/// Writes `payload` into `dir` as upstream's atomic writer does (see the module's words).
pub fn write_atomically(dir: &Path, payload: &Payload) -> std::io::Result<()> {
    let bytes: usize = payload.values().map(|(content, _)| content.len()).sum();
    if bytes > limits::AGENT_VOLUME_PAYLOAD_BYTES_MAX {
        return Err(std::io::Error::other(format!(
            "{bytes} bytes of files, more than {}",
            limits::AGENT_VOLUME_PAYLOAD_BYTES_MAX
        )));
    }
    if let Some(bad) = payload.keys().find(|p| !relative_inside(p)) {
        return Err(std::io::Error::other(format!("invalid path {bad:?}")));
    }
    let stamp = jiff::Timestamp::now();
    let version = format!("..{}.{:09}", stamp.strftime("%Y_%m_%d_%H_%M_%S"), stamp.subsec_nanosecond());
    let new = dir.join(&version);
    std::fs::create_dir(&new)?;
    for (path, (content, mode)) in payload {
        let file = new.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, content)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode & 0o777))?;
    }
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755))?;
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&version, &tmp)?;
    std::fs::rename(&tmp, dir.join(DATA))?;
    // The top-level entries: a symlink each into `..data`; those of earlier payloads go.
    let top: HashSet<&str> = payload.keys().filter_map(|p| p.split('/').next()).collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA).join(name), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with("..") {
            if name != DATA && name != version && entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(&path)?;
            }
        } else if !top.contains(name.as_str()) && entry.file_type()?.is_symlink() {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::sources::SourceKey;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "web"}},
            "spec": spec,
        }))
        .unwrap()
    }

    fn sources() -> Sources {
        let key = |kind, name: &str| SourceKey::object(kind, "ns", name);
        let data = |pairs: &[(&str, &str)]| {
            Some(pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect::<BTreeMap<_, _>>())
        };
        Sources(
            [
                (key(Kind::ConfigMap, "cfg"), data(&[("color", "blue"), ("size", "9")])),
                (key(Kind::Secret, "creds"), data(&[("password", "hunter2")])),
                (key(Kind::ConfigMap, "gone"), None),
            ]
            .into_iter()
            .collect(),
        )
    }

    fn files(volume: serde_json::Value) -> Result<Made, Missing> {
        let p = pod(serde_json::json!({"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}],
            "volumes": [volume]}));
        made_of(&p, &p.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0], &sources())
    }

    fn file(content: &str, mode: u32) -> (Vec<u8>, u32) {
        (content.as_bytes().to_vec(), mode)
    }

    #[test]
    fn config_maps_secrets_and_the_downward_api_become_files() {
        let all = files(serde_json::json!({"name": "v", "configMap": {"name": "cfg"}})).unwrap();
        let expected = Payload::from([("color".into(), file("blue", 0o644)), ("size".into(), file("9", 0o644))]);
        assert_eq!(all, Made::Files { payload: expected, secret: false });
        let items = files(serde_json::json!({"name": "v", "secret": {"secretName": "creds", "defaultMode": 0o400,
            "items": [{"key": "password", "path": "db/pass", "mode": 0o440}]}}))
        .unwrap();
        assert_eq!(
            items,
            Made::Files { payload: Payload::from([("db/pass".into(), file("hunter2", 0o440))]), secret: true }
        );
        let downward = files(serde_json::json!({"name": "v", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}]}}))
        .unwrap();
        let expected =
            Payload::from([("labels".into(), file("app=\"web\"\n", 0o644)), ("mem".into(), file("64", 0o644))]);
        assert_eq!(downward, Made::Files { payload: expected, secret: false });
        let projected = files(serde_json::json!({"name": "v", "projected": {"sources": [
            {"configMap": {"name": "cfg", "items": [{"key": "color", "path": "color"}]}},
            {"secret": {"name": "creds"}}]}}))
        .unwrap();
        let expected =
            Payload::from([("color".into(), file("blue", 0o644)), ("password".into(), file("hunter2", 0o644))]);
        assert_eq!(projected, Made::Files { payload: expected, secret: true });
    }

    #[test]
    fn a_projected_token_is_the_one_read_for_its_pod_and_lifetime() {
        let volume = serde_json::json!({"name": "kube-api-access-x", "projected": {"defaultMode": 0o644, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "cfg", "items": [{"key": "color", "path": "ca.crt"}]}}]}});
        let p = pod(serde_json::json!({"serviceAccountName": "builder", "containers": [{"name": "c"}],
            "volumes": [volume]}));
        let volume = &p.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
        assert_eq!(made_of(&p, volume, &sources()), Err(Missing::Unread), "no token yet");
        let projection = volume.projected.as_ref().unwrap().sources.as_ref().unwrap()[0].service_account_token.clone();
        let key = SourceKey::token(&p, &projection.unwrap());
        let token = key.token.clone().unwrap();
        assert_eq!((key.name.as_str(), token.pod.as_str(), token.pod_uid.as_str()), ("builder", "p", "u1"));
        assert_eq!((token.audience.as_str(), token.seconds), ("", 3607));
        let mut read = sources();
        read.0.insert(key.clone(), Some(BTreeMap::from([("token".to_string(), b"eyJ".to_vec())])));
        let expected = Payload::from([("token".into(), file("eyJ", 0o644)), ("ca.crt".into(), file("blue", 0o644))]);
        assert_eq!(made_of(&p, volume, &read), Ok(Made::Files { payload: expected, secret: true }));
        read.0.insert(key, None);
        assert_eq!(
            made_of(&p, volume, &read),
            Err(Missing::Absent("failed to fetch token: serviceaccounts \"builder\" not found".into()))
        );
    }

    #[test]
    fn what_is_missing_is_an_error_unless_optional() {
        assert_eq!(
            files(serde_json::json!({"name": "v", "configMap": {"name": "gone"}})),
            Err(Missing::Absent("configmap \"gone\" not found".into()))
        );
        assert_eq!(
            files(serde_json::json!({"name": "v", "configMap": {"name": "gone", "optional": true}})),
            Ok(Made::Files { payload: Payload::new(), secret: false })
        );
        assert_eq!(
            files(
                serde_json::json!({"name": "v", "configMap": {"name": "cfg", "items": [{"key": "nope", "path": "x"}]}})
            ),
            Err(Missing::Absent("configmap references non-existent config key: nope".into()))
        );
        assert_eq!(files(serde_json::json!({"name": "v", "secret": {"secretName": "unread"}})), Err(Missing::Unread));
    }

    #[test]
    fn mounts_follow_the_volume_mounts_and_files_are_read_only() {
        let p = pod(serde_json::json!({
            "containers": [{"name": "c", "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/cfg"},
                {"name": "scratch", "mountPath": "/scratch", "subPath": "a/b"},
                {"name": "host", "mountPath": "/host", "readOnly": true},
                {"name": "escape", "mountPath": "/x", "subPath": "../.."}]}],
            "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "scratch", "emptyDir": {}},
                {"name": "host", "hostPath": {"path": "/var/log"}}, {"name": "escape", "emptyDir": {}}]}));
        let container = &p.spec.as_ref().unwrap().containers[0];
        let mounts = mounts(&p, container, Path::new("/data/volumes/u1"));
        let mount =
            |host: &str, at: &str, ro: bool| Mount { host_path: host.into(), container_path: at.into(), read_only: ro };
        assert_eq!(
            mounts,
            [
                mount("/data/volumes/u1/cfg", "/etc/cfg", true),
                mount("/data/volumes/u1/scratch/a/b", "/scratch", false),
                mount("/var/log", "/host", true),
            ]
        );
    }

    #[test]
    fn an_update_replaces_every_file_at_once_and_drops_what_went() {
        let dir = tempfile::tempdir().unwrap();
        let first = Payload::from([("a".into(), file("1", 0o644)), ("sub/b".into(), file("2", 0o600))]);
        write_atomically(dir.path(), &first).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(dir.path().join("sub/b")).unwrap(), "2");
        let mode = std::fs::metadata(dir.path().join("sub/b")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = Payload::from([("a".into(), file("3", 0o644)), ("c".into(), file("4", 0o644))]);
        write_atomically(dir.path(), &second).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "3");
        assert_eq!(std::fs::read_to_string(dir.path().join("c")).unwrap(), "4");
        assert!(std::fs::symlink_metadata(dir.path().join("sub")).is_err(), "an entry no longer there is gone");
        let hidden: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".."))
            .collect();
        assert_eq!(hidden.len(), 2, "..data and one version: {hidden:?}");
        assert!(write_atomically(dir.path(), &Payload::from([("../x".into(), file("", 0o644))])).is_err());
    }

    #[test]
    fn an_fs_group_owns_the_files_and_can_read_them() {
        let dir = tempfile::tempdir().unwrap();
        let payload = Payload::from([("a".into(), file("1", 0o400)), ("sub/b".into(), file("2", 0o600))]);
        write_atomically(dir.path(), &payload).unwrap();
        own(dir.path(), 2000, true).unwrap();
        for (path, mode) in [("a", 0o440), ("sub/b", 0o640)] {
            let meta = std::fs::metadata(dir.path().join(path)).unwrap();
            assert_eq!((meta.gid(), meta.permissions().mode() & 0o7777), (2000, mode), "{path}");
        }
        let sub = std::fs::metadata(dir.path().join("sub")).unwrap();
        assert_eq!(sub.permissions().mode() & 0o2000, 0o2000, "directories pass their group on");
        assert_eq!(std::fs::symlink_metadata(dir.path().join("a")).unwrap().gid(), 0, "links are left alone");
    }

    #[test]
    fn a_host_path_is_checked_or_made_as_its_type_says() {
        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("made/here");
        host_path(&made, "DirectoryOrCreate").unwrap();
        assert!(made.is_dir());
        host_path(&dir.path().join("f"), "FileOrCreate").unwrap();
        assert!(dir.path().join("f").is_file());
        assert!(host_path(&dir.path().join("f"), "Directory").is_err());
        assert!(host_path(&dir.path().join("none"), "File").is_err());
        host_path(&dir.path().join("none"), "").unwrap();
    }
}
