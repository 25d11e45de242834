//! Admission rules that read other objects from the store: a new pod's ServiceAccount must exist (upstream's
//! ServiceAccount admission plugin), and the pod mounts its token (when this replica signs tokens); a new
//! namespace gets its `default` ServiceAccount in the same request, so that pods can be created in it at once,
//! as they can upstream once its controller has made the account (its `kube-root-ca.crt` is the namespace
//! controller's to make, as upstream's publisher makes it).
//!
//! Which kinds these apply to is the catalog's to say (`runs_as_service_account`,
//! `creates_default_service_account`).

use serde_json::{json, Value};

use crate::apis::{admission, catalog};
use crate::apiserver::errors::ApiError;
use crate::apiserver::registry::objects::Consistency;
use crate::apiserver::registry::verbs::{meta, name_suffix, Target, Verbs, WriteOptions};
use crate::limits;

/// The account a pod runs as when it names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The annotation of a static pod's mirror, which may not run as any ServiceAccount.
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

fn service_accounts() -> &'static catalog::Resource {
    catalog::find("", "v1", "serviceaccounts").expect("service accounts are served")
}

impl Verbs {
    /// Upstream's ServiceAccount admission of a new pod (`obj`, named `name` in `target`'s namespace): it runs as
    /// `default` unless it names an account; the account must exist (403 otherwise); a pod that names no image
    /// pull secrets takes its account's. A mirror pod may name no account.
    pub(super) async fn admit_service_account(
        &self,
        target: &Target,
        name: &str,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        let (resource, Some(namespace)) = (target.resource, target.namespace.as_deref()) else { return Ok(()) };
        if !resource.runs_as_service_account {
            return Ok(());
        }
        let forbidden = |message: String| ApiError::Forbidden { resource, name: name.to_string(), message };
        let named = obj.pointer("/spec/serviceAccountName").and_then(Value::as_str).filter(|n| !n.is_empty());
        if meta(obj).and_then(|m| m.get("annotations")).and_then(|a| a.get(MIRROR_POD_ANNOTATION)).is_some() {
            return match named {
                Some(_) => Err(forbidden("a mirror pod may not reference service accounts".into())),
                None => Ok(()),
            };
        }
        let account = named.unwrap_or(DEFAULT_SERVICE_ACCOUNT).to_string();
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
        // `serviceAccount` is the field's deprecated alias, which upstream's encoding always fills from it.
        spec.insert("serviceAccountName".into(), json!(account));
        spec.insert("serviceAccount".into(), json!(account));
        let key = service_accounts().key(Some(namespace), &account);
        let lookups = if account == DEFAULT_SERVICE_ACCOUNT { limits::DEFAULT_SERVICE_ACCOUNT_LOOKUPS_MAX } else { 1 };
        // A local read that finds the account is enough (accounts are only checked, not guarded); one that does
        // not is confirmed with linearizable reads.
        let mut found = self.objects.get(&key, Consistency::Local).await?;
        let mut attempt = 0;
        while found.is_none() && attempt < lookups {
            if attempt > 0 {
                let pause = std::time::Duration::from_millis(limits::DEFAULT_SERVICE_ACCOUNT_LOOKUP_INTERVAL_MS);
                tokio::time::sleep(pause).await;
            }
            found = self.objects.get(&key, Consistency::Linearizable).await?;
            attempt += 1;
        }
        let Some(found) = found else {
            return Err(forbidden(format!(
                "error looking up service account {namespace}/{account}: serviceaccount {account:?} not found"
            )));
        };
        let pull_secrets = found.object.get("imagePullSecrets").and_then(Value::as_array).cloned().unwrap_or_default();
        let names: Vec<Value> = pull_secrets.iter().filter_map(|s| s.get("name")).map(|n| json!({"name": n})).collect();
        let unset = spec.get("imagePullSecrets").is_none_or(|s| s.as_array().is_none_or(Vec::is_empty));
        if unset && !names.is_empty() {
            spec.insert("imagePullSecrets".into(), Value::Array(names));
        }
        if self.mounts_tokens {
            admission::mount_service_account_token(obj, &found.object, name_suffix);
        }
        Ok(())
    }

    /// Creates the `default` ServiceAccount of a namespace just created, for kinds that come with one. One that
    /// already exists is left as it is; a failure is logged and left to the namespace controller, which creates
    /// any that is missing.
    pub(super) async fn create_default_service_account(&self, target: &Target, name: &str) {
        if !target.resource.creates_default_service_account {
            return;
        }
        let accounts =
            Target { resource: service_accounts(), namespace: Some(name.to_string()), name: None, subresource: None };
        let account =
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT_SERVICE_ACCOUNT}});
        match Box::pin(self.create(&accounts, account, &WriteOptions::default())).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => tracing::warn!(namespace = name, error = %e, "the default service account was not created"),
        }
    }
}
