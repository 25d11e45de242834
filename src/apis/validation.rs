//! Field validation of built-in objects: the checks upstream's `Validate*` functions make when an object is
//! created or updated, reported as [`Cause`]s with upstream's field paths and messages.
//!
//! Objects are `serde_json::Value`s in Kubernetes JSON form, validated for the catalog entry (`Resource`) they
//! belong to: [`validate_create`] and [`validate_update`] run the metadata rules every kind shares, then the
//! rules the entry names (its `validate`, `validate_update` and `names`). Objects arrive defaulted (see
//! `defaults.rs`) and round-tripped through their typed form. This module owns:
//! - the metadata rules every kind shares: name syntax by the kind's [`NameRule`], namespace, labels,
//!   annotations, and the identity fields (name, namespace, uid) that may not change on update;
//! - pod spec rules wherever a pod spec appears: a Pod, a PodTemplate, a workload's pod template, a Job or
//!   CronJob template;
//! - spec rules for Deployments, ReplicaSets, StatefulSets, DaemonSets, ReplicationControllers, Services,
//!   Jobs, CronJobs, ConfigMaps, Secrets, HorizontalPodAutoscalers and EndpointSlices;
//! - update rules: immutable fields, and the few parts of a running Pod's spec that may change;
//! - quantities (`resource.Quantity`'s grammar), which upstream checks while decoding a body
//!   ([`unparsable_quantity`]) and whose values it validates (non-negative, requests within limits).
//!
//! Invariants:
//! - Pure: no I/O and no clock; names, cluster IPs and node ports are never allocated here.
//! - Never panics: a field of an unexpected JSON type is read as absent (or shown as it is in a message).
//! - Each [`Cause::message`] reads as upstream prints it after the field path (`Required value`,
//!   `Invalid value: <value>: <detail>`, `Unsupported value: ...`), with values rendered as Go's `%q` and
//!   `%#v` render them.
//! - For one object, causes come out in upstream's order, so the first cause is the one upstream lists first.
//! - Kinds without spec rules get the metadata rules only.

use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashSet};

use super::catalog::Resource;

/// One reason an object is invalid: upstream's `StatusCause`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueDuplicate`, `FieldValueNotSupported`,
    /// `FieldValueForbidden`, `FieldValueTooLong` or `FieldValueNotFound`.
    pub reason: &'static str,
    /// The field path in upstream form, such as `spec.template.spec.containers[0].image`.
    pub field: String,
    /// What upstream prints after the field path, such as `Required value`.
    pub message: String,
}

/// Validates an object of `resource` about to be created: the metadata rules every kind shares, then the kind's.
pub fn validate_create(resource: &Resource, obj: &Value) -> Vec<Cause> {
    let mut causes = Causes::default();
    validate_object(resource, obj, &mut causes);
    causes.0
}

/// Validates a new version of an existing object: every create rule on `new`, plus what may not change (the
/// identity metadata, then the kind's update rules).
pub fn validate_update(resource: &Resource, old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Causes::default();
    validate_object(resource, new, &mut causes);
    validate_metadata_update(old, new, &mut causes);
    (resource.validate_update)(old, new, &mut causes);
    causes.0
}

fn validate_object(resource: &Resource, obj: &Value, causes: &mut Causes) {
    validate_metadata(resource.names, obj, causes);
    (resource.validate)(obj, causes);
}

/// The validation of a kind with no rules beyond the metadata ones.
pub(crate) fn no_rules(_obj: &Value, _causes: &mut Causes) {}

/// The update validation of a kind with no update rules beyond the create ones and the identity metadata.
pub(crate) fn no_update_rules(_old: &Value, _new: &Value, _causes: &mut Causes) {}

pub(crate) fn validate_pod(obj: &Value, causes: &mut Causes) {
    validate_pod_spec(member(obj, "spec"), "spec", &[], causes);
}

pub(crate) fn validate_pod_template_object(obj: &Value, causes: &mut Causes) {
    validate_pod_template(member(obj, "template"), "template", &[], causes);
}

pub(crate) fn validate_endpoint_slice_update(old: &Value, new: &Value, causes: &mut Causes) {
    validate_unchanged(old.get("addressType"), new.get("addressType"), "addressType", causes);
}

// ---------------------------------------------------------------------------------------------------------
// Causes and how values are shown in them.

const IMMUTABLE: &str = "field is immutable";
const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";
const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";
const NEGATIVE: &str = "must be greater than or equal to 0";
const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";
const MAX_INT32: i64 = 2_147_483_647;
const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const RESTART_POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];

/// The causes found so far, in upstream's order. Only this module adds to them.
#[derive(Default)]
pub struct Causes(Vec<Cause>);

impl Causes {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn add(&mut self, reason: &'static str, field: &str, message: String) {
        self.0.push(Cause { reason, field: field.to_owned(), message });
    }

    fn required(&mut self, field: &str, detail: &str) {
        self.add("FieldValueRequired", field, with_detail("Required value".to_owned(), detail));
    }

    fn invalid(&mut self, field: &str, shown: &str, detail: &str) {
        self.add("FieldValueInvalid", field, with_detail(format!("Invalid value: {shown}"), detail));
    }

    fn not_supported(&mut self, field: &str, shown: &str, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
        let detail = if list.is_empty() { String::new() } else { format!("supported values: {}", list.join(", ")) };
        self.add("FieldValueNotSupported", field, with_detail(format!("Unsupported value: {shown}"), &detail));
    }

    fn duplicate(&mut self, field: &str, shown: &str) {
        self.add("FieldValueDuplicate", field, format!("Duplicate value: {shown}"));
    }

    fn forbidden(&mut self, field: &str, detail: &str) {
        self.add("FieldValueForbidden", field, with_detail("Forbidden".to_owned(), detail));
    }

    fn not_found(&mut self, field: &str, shown: &str) {
        self.add("FieldValueNotFound", field, format!("Not found: {shown}"));
    }

    fn too_long(&mut self, field: &str, max_bytes: usize) {
        self.add("FieldValueTooLong", field, format!("Too long: may not be more than {max_bytes} bytes"));
    }

    /// `Invalid value: <n>: must be greater than or equal to 0` when `obj[key]` is a negative integer.
    fn nonnegative(&mut self, obj: &Value, key: &str, path: &str) {
        if let Some(n) = int(obj, key).filter(|n| *n < 0) {
            self.invalid(&child(path, key), &n.to_string(), NEGATIVE);
        }
    }
}

fn with_detail(head: String, detail: &str) -> String {
    if detail.is_empty() {
        head
    } else {
        format!("{head}: {detail}")
    }
}

/// A string as Go's `%q` prints it.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() && (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON value as upstream shows a field of the matching Go type.
fn show(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::String(s) => go_quote(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

fn show_opt(value: Option<&Value>) -> String {
    value.map_or_else(|| "null".to_owned(), show)
}

/// A `map[string]string` (labels, a selector) as Go's `%#v` prints it.
fn show_string_map(value: Option<&Value>) -> String {
    let Some(map) = value.and_then(Value::as_object) else { return "map[string]string(nil)".to_owned() };
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let shown: Vec<String> =
        entries.iter().map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v.as_str().unwrap_or("")))).collect();
    format!("map[string]string{{{}}}", shown.join(", "))
}

fn show_string_list(value: Option<&Value>) -> String {
    let Some(list) = value.and_then(Value::as_array) else { return "[]string(nil)".to_owned() };
    let shown: Vec<String> = list.iter().map(|v| go_quote(v.as_str().unwrap_or(""))).collect();
    format!("[]string{{{}}}", shown.join(", "))
}

/// A label selector as Go's `%#v` prints a `v1.LabelSelector`.
fn show_selector(selector: &Value) -> String {
    let expressions = match selector.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_owned(),
        Some(list) => {
            let shown: Vec<String> = list
                .iter()
                .map(|r| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(text(r, "key")),
                        go_quote(text(r, "operator")),
                        show_string_list(r.get("values"))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", shown.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{}}}",
        show_string_map(selector.get("matchLabels")),
        expressions
    )
}

/// An int-or-string as Go's `%#v` prints an `intstr.IntOrString`.
fn show_int_or_string(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}", go_quote(s)),
        Some(Value::Number(n)) => format!("intstr.IntOrString{{Type:0, IntVal:{n}, StrVal:\"\"}}"),
        None | Some(Value::Null) => "intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}".to_owned(),
        Some(other) => show(other),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Field paths and JSON access. Every accessor reads a wrongly typed field as absent.

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn keyed(path: &str, key: &str) -> String {
    format!("{path}[{key}]")
}

static NULL: Value = Value::Null;

/// `obj[key]`, or null when absent.
fn member<'a>(obj: &'a Value, key: &str) -> &'a Value {
    obj.get(key).unwrap_or(&NULL)
}

/// `obj[key]` unless absent or null.
fn present<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn text<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.get(key).and_then(Value::as_str).unwrap_or("")
}

fn int(obj: &Value, key: &str) -> Option<i64> {
    let n = obj.get(key)?;
    n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))
}

fn items<'a>(obj: &'a Value, key: &str) -> &'a [Value] {
    obj.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn sorted_entries(value: Option<&Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = value.and_then(Value::as_object).into_iter().flatten().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// Whether a value counts as unset the way Go's zero values do: null, `""`, `[]` or an object of zero values.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_zero),
        _ => false,
    }
}

/// Equality in the sense of upstream's semantic deep-equal: unset and empty are the same.
fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a.filter(|v| !is_zero(v)), b.filter(|v| !is_zero(v))) {
        (None, None) => true,
        (Some(Value::Object(x)), Some(Value::Object(y))) => x.keys().chain(y.keys()).all(|k| same(x.get(k), y.get(k))),
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(Some(p), Some(q)))
        }
        (Some(Value::Number(x)), Some(Value::Number(y))) => match (x.as_i64(), y.as_i64()) {
            (Some(p), Some(q)) => p == q,
            _ => x.to_string() == y.to_string(),
        },
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------------------
// Name and key syntax: each returns upstream's messages, empty when the value is valid.

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;
const PORT_NAME_MAX: usize = 15;

const DNS1123_LABEL_MSG: &str =
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_MSG: &str =
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_MSG: &str =
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";

fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{example}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_dns_label_syntax(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_syntax(s: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && edge_ok(s.chars().next())
        && edge_ok(s.chars().last())
}

fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_error(DNS1123_LABEL_MAX));
    }
    if !is_dns_label_syntax(s) {
        errs.push(regex_error(DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
    }
    errs
}

/// Upstream's `ValidatePathSegmentName`.
fn path_segment(s: &str) -> Vec<String> {
    if s == "." || s == ".." {
        return vec![format!("may not be '{s}'")];
    }
    ['/', '%'].iter().filter(|c| s.contains(**c)).map(|c| format!("may not contain '{c}'")).collect()
}

pub(crate) fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if !s.split('.').all(is_dns_label_syntax) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_error(DNS1123_LABEL_MAX));
    }
    if !(is_dns_label_syntax(s) && s.starts_with(|c: char| c.is_ascii_lowercase())) {
        errs.push(regex_error(DNS1035_LABEL_MSG, DNS1035_LABEL_FMT, &["my-name", "abc-123"]));
    }
    errs
}

/// A label key or annotation key: an optional DNS subdomain prefix and `/`, then a name of up to 63 characters.
fn qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else {
                errs.extend(dns1123_subdomain(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            let rule = regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"]);
            return vec![format!(
                "a qualified name {rule} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errs.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX)));
    }
    if !is_qualified_syntax(name) {
        let rule = regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"]);
        errs.push(format!("name part {rule}"));
    }
    errs
}

fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > LABEL_VALUE_MAX {
        errs.push(max_len_error(LABEL_VALUE_MAX));
    }
    if !(s.is_empty() || is_qualified_syntax(s)) {
        errs.push(regex_error(LABEL_VALUE_MSG, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// A name that must be usable as one segment of a URL path.
fn path_segment_name(s: &str) -> Vec<String> {
    if s == "." || s == ".." {
        return vec![format!("may not be '{s}'")];
    }
    ["/", "%"].iter().filter(|bad| s.contains(**bad)).map(|bad| format!("may not contain '{bad}'")).collect()
}

/// A port name (an IANA service name).
fn port_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > PORT_NAME_MAX {
        errs.push(max_len_error(PORT_NAME_MAX));
    }
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_owned());
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_owned());
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".to_owned());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_owned());
    }
    errs
}

/// A key of a ConfigMap's or Secret's data.
fn config_map_key(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_')) {
        errs.push(regex_error(CONFIG_KEY_MSG, CONFIG_KEY_FMT, &["key.name", "KEY_NAME", "key-name"]));
    }
    if s == "." {
        errs.push("must not be '.'".to_owned());
    } else if s == ".." {
        errs.push("must not be '..'".to_owned());
    } else if s.starts_with("..") {
        errs.push("must not start with '..'".to_owned());
    }
    errs
}

fn is_port_number(n: i64) -> bool {
    (1..=65535).contains(&n)
}

// ---------------------------------------------------------------------------------------------------------
// Metadata.

/// Which syntax a kind's `metadata.name` (and `generateName`) must follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// Most built-in kinds: a lowercase RFC 1123 subdomain.
    Dns1123Subdomain,
    /// Namespaces: a lowercase RFC 1123 label.
    Dns1123Label,
    /// Services: an RFC 1035 label (starts with a letter).
    Dns1035Label,
    /// RBAC's kinds: anything that can be one segment of a path (`system:masters`).
    PathSegment,
}

fn name_messages(rule: NameRule, name: &str) -> Vec<String> {
    match rule {
        NameRule::Dns1123Subdomain => dns1123_subdomain(name),
        NameRule::Dns1123Label => dns1123_label(name),
        NameRule::Dns1035Label => dns1035_label(name),
        NameRule::PathSegment => path_segment(name),
    }
}

fn validate_metadata(rule: NameRule, obj: &Value, causes: &mut Causes) {
    let meta = member(obj, "metadata");
    let name = text(meta, "name");
    let generate_name = text(meta, "generateName");
    if !generate_name.is_empty() {
        // A prefix may end in '-': the generated suffix follows it.
        let masked = match generate_name.strip_suffix('-') {
            Some(head) => format!("{head}a"),
            None => generate_name.to_owned(),
        };
        for msg in name_messages(rule, &masked) {
            causes.invalid("metadata.generateName", &go_quote(generate_name), &msg);
        }
    }
    if name.is_empty() {
        if generate_name.is_empty() {
            causes.required("metadata.name", "name or generateName is required");
        }
    } else {
        for msg in name_messages(rule, name) {
            causes.invalid("metadata.name", &go_quote(name), &msg);
        }
    }
    let namespace = text(meta, "namespace");
    if !namespace.is_empty() {
        for msg in dns1123_label(namespace) {
            causes.invalid("metadata.namespace", &go_quote(namespace), &msg);
        }
    }
    validate_labels(meta.get("labels"), "metadata.labels", causes);
    validate_annotations(meta.get("annotations"), "metadata.annotations", causes);
}

fn validate_labels(labels: Option<&Value>, path: &str, causes: &mut Causes) {
    for (key, value) in sorted_entries(labels) {
        for msg in qualified_name(key) {
            causes.invalid(path, &go_quote(key), &msg);
        }
        let value = value.as_str().unwrap_or("");
        for msg in label_value(value) {
            causes.invalid(path, &go_quote(value), &msg);
        }
    }
}

const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

fn validate_annotations(annotations: Option<&Value>, path: &str, causes: &mut Causes) {
    let mut total = 0;
    for (key, value) in sorted_entries(annotations) {
        // Annotation keys are qualified names in any letter case.
        for msg in qualified_name(&key.to_ascii_lowercase()) {
            causes.invalid(path, &go_quote(key), &msg);
        }
        total += key.len() + value.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE {
        causes.too_long(path, TOTAL_ANNOTATION_SIZE);
    }
}

fn validate_metadata_update(old: &Value, new: &Value, causes: &mut Causes) {
    let (old_meta, new_meta) = (member(old, "metadata"), member(new, "metadata"));
    let name = text(new_meta, "name");
    if name != text(old_meta, "name") {
        causes.invalid("metadata.name", &go_quote(name), IMMUTABLE);
    }
    // An empty namespace or uid on the new version means the client left it for the server to keep.
    for key in ["namespace", "uid"] {
        let value = text(new_meta, key);
        if !value.is_empty() && value != text(old_meta, key) {
            causes.invalid(&child("metadata", key), &go_quote(value), IMMUTABLE);
        }
    }
}

/// `Invalid value: <new>: field is immutable` when a field changed.
fn validate_unchanged(old: Option<&Value>, new: Option<&Value>, path: &str, causes: &mut Causes) {
    if !same(old, new) {
        causes.invalid(path, &show_opt(new), IMMUTABLE);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Label selectors.

/// What a workload's selector selects, once validated.
enum Selection<'a> {
    /// No selector: nothing matches.
    Missing,
    /// An empty selector: everything matches.
    Everything,
    /// A selector that could not be turned into requirements.
    Broken,
    Selector(&'a Value),
}

fn validate_label_selector(selector: &Value, path: &str, causes: &mut Causes) {
    validate_labels(selector.get("matchLabels"), &child(path, "matchLabels"), causes);
    let expressions_path = child(path, "matchExpressions");
    for (i, requirement) in items(selector, "matchExpressions").iter().enumerate() {
        let req_path = index(&expressions_path, i);
        let values = items(requirement, "values");
        match text(requirement, "operator") {
            "In" | "NotIn" if values.is_empty() => {
                causes.required(&child(&req_path, "values"), "must be specified when `operator` is 'In' or 'NotIn'")
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => causes.forbidden(
                &child(&req_path, "values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => causes.invalid(&child(&req_path, "operator"), &go_quote(other), "not a valid selector operator"),
        }
        let key = text(requirement, "key");
        for msg in qualified_name(key) {
            causes.invalid(&child(&req_path, "key"), &go_quote(key), &msg);
        }
        for (j, value) in values.iter().enumerate() {
            let value = value.as_str().unwrap_or("");
            for msg in label_value(value) {
                causes.invalid(&index(&child(&req_path, "values"), j), &go_quote(value), &msg);
            }
        }
    }
}

fn selector_is_empty(selector: &Value) -> bool {
    let labels = selector.get("matchLabels").and_then(Value::as_object).map_or(0, Map::len);
    labels + items(selector, "matchExpressions").len() == 0
}

fn selector_matches(selector: &Value, labels: Option<&Value>) -> bool {
    let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
    let labels_match = sorted_entries(selector.get("matchLabels")).iter().all(|(k, v)| label(k) == v.as_str());
    labels_match
        && items(selector, "matchExpressions").iter().all(|requirement| {
            let value = label(text(requirement, "key"));
            let listed = |v: &str| items(requirement, "values").iter().any(|x| x.as_str() == Some(v));
            match text(requirement, "operator") {
                "In" => value.is_some_and(listed),
                "NotIn" => !value.is_some_and(listed),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// The apps workloads, which differ in how their selectors are checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
}

impl Workload {
    /// The word upstream's "empty selector" message uses (ReplicaSets share the Deployment wording).
    fn noun(self) -> &'static str {
        match self {
            Workload::Deployment | Workload::ReplicaSet => "deployment",
            Workload::StatefulSet => "statefulset",
            Workload::DaemonSet => "daemonset",
        }
    }
}

/// A workload's `spec.selector`: valid, not empty, and (except for a DaemonSet, whose missing selector shows up
/// as a template mismatch) required.
fn validate_workload_selector<'a>(spec: &'a Value, workload: Workload, causes: &mut Causes) -> Selection<'a> {
    let Some(selector) = present(spec, "selector") else {
        if workload != Workload::DaemonSet {
            causes.required("spec.selector", "");
        }
        return Selection::Missing;
    };
    let before = causes.len();
    validate_label_selector(selector, "spec.selector", causes);
    let broken = causes.len() > before;
    let empty = selector_is_empty(selector);
    if empty {
        let detail = format!("empty selector is invalid for {}", workload.noun());
        causes.invalid("spec.selector", &show_selector(selector), &detail);
    }
    if broken {
        if matches!(workload, Workload::Deployment | Workload::ReplicaSet) {
            causes.invalid("spec.selector", &show_selector(selector), "invalid label selector");
        }
        Selection::Broken
    } else if empty {
        Selection::Everything
    } else {
        Selection::Selector(selector)
    }
}

/// `spec.template.metadata.labels` must be selected by the workload's selector.
fn validate_template_selected(selection: &Selection, template: &Value, causes: &mut Causes) {
    let labels = member(template, "metadata").get("labels");
    let selected = match selection {
        Selection::Missing => false,
        Selection::Everything | Selection::Broken => true,
        Selection::Selector(selector) => selector_matches(selector, labels),
    };
    if !selected {
        causes.invalid("spec.template.metadata.labels", &show_string_map(labels), SELECTOR_MISMATCH);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Pod specs and pod templates.

const VOLUME_SOURCES: [&str; 30] = [
    "hostPath",
    "emptyDir",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "quobyte",
    "cephfs",
    "cinder",
    "flexVolume",
    "downwardAPI",
    "fc",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "configMap",
    "scaleIO",
    "storageos",
    "projected",
    "csi",
    "ephemeral",
    "image",
];

/// A pod template's labels, annotations and pod spec. `claim_names` are volumes a StatefulSet's
/// `volumeClaimTemplates` add.
fn validate_pod_template(template: &Value, path: &str, claim_names: &[&str], causes: &mut Causes) {
    let meta = member(template, "metadata");
    validate_labels(meta.get("labels"), &child(path, "labels"), causes);
    validate_annotations(meta.get("annotations"), &child(path, "annotations"), causes);
    let spec = member(template, "spec");
    validate_pod_spec(spec, &child(path, "spec"), claim_names, causes);
    if !items(spec, "ephemeralContainers").is_empty() {
        causes.forbidden(&child(path, "spec.ephemeralContainers"), "ephemeral containers not allowed in pod template");
    }
}

fn validate_pod_spec(spec: &Value, path: &str, claim_names: &[&str], causes: &mut Causes) {
    let mut volumes = validate_volumes(spec, &child(path, "volumes"), causes);
    volumes.extend(claim_names.iter().map(|n| (*n).to_owned()));
    let mut container_names = HashSet::new();
    let containers_path = child(path, "containers");
    let containers = items(spec, "containers");
    if containers.is_empty() {
        causes.required(&containers_path, "");
    }
    for (i, container) in containers.iter().enumerate() {
        validate_container(
            container,
            &index(&containers_path, i),
            ContainerRole::Regular,
            &volumes,
            &mut container_names,
            causes,
        );
    }
    let init_path = child(path, "initContainers");
    for (i, container) in items(spec, "initContainers").iter().enumerate() {
        validate_container(
            container,
            &index(&init_path, i),
            ContainerRole::Init,
            &volumes,
            &mut container_names,
            causes,
        );
    }
    validate_restart_policy(spec, path, causes);
    validate_choice(spec, "dnsPolicy", path, &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"], causes);
    validate_labels(spec.get("nodeSelector"), &child(path, "nodeSelector"), causes);
    let node_name = text(spec, "nodeName");
    if !node_name.is_empty() {
        for msg in dns1123_subdomain(node_name) {
            causes.invalid(&child(path, "nodeName"), &go_quote(node_name), &msg);
        }
    }
    validate_affinity(member(spec, "affinity"), &child(path, "affinity"), causes);
    let service_account = text(spec, "serviceAccountName");
    if !service_account.is_empty() {
        for msg in dns1123_subdomain(service_account) {
            causes.invalid(&child(path, "serviceAccountName"), &go_quote(service_account), &msg);
        }
    }
    if let Some(seconds) = int(spec, "activeDeadlineSeconds") {
        if !(1..=MAX_INT32).contains(&seconds) {
            let detail = format!("must be between 1 and {MAX_INT32}, inclusive");
            causes.invalid(&child(path, "activeDeadlineSeconds"), &seconds.to_string(), &detail);
        }
    }
    for key in ["hostname", "subdomain"] {
        let value = text(spec, key);
        if !value.is_empty() {
            for msg in dns1123_label(value) {
                causes.invalid(&child(path, key), &go_quote(value), &msg);
            }
        }
    }
    validate_tolerations(items(spec, "tolerations"), &child(path, "tolerations"), causes);
    causes.nonnegative(spec, "terminationGracePeriodSeconds", path);
}

fn validate_affinity(affinity: &Value, path: &str, causes: &mut Causes) {
    const REQUIRED: &str = "requiredDuringSchedulingIgnoredDuringExecution";
    const PREFERRED: &str = "preferredDuringSchedulingIgnoredDuringExecution";
    let node = member(affinity, "nodeAffinity");
    let node_path = child(path, "nodeAffinity");
    let terms_path = child(&child(&node_path, REQUIRED), "nodeSelectorTerms");
    for (i, term) in items(member(node, REQUIRED), "nodeSelectorTerms").iter().enumerate() {
        validate_node_selector_term(term, &index(&terms_path, i), causes);
    }
    let preferred_path = child(&node_path, PREFERRED);
    for (i, preferred) in items(node, PREFERRED).iter().enumerate() {
        let term_path = child(&index(&preferred_path, i), "preference");
        validate_node_selector_term(member(preferred, "preference"), &term_path, causes);
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let terms = member(affinity, kind);
        let kind_path = child(path, kind);
        let required_path = child(&kind_path, REQUIRED);
        for (i, term) in items(terms, REQUIRED).iter().enumerate() {
            validate_pod_affinity_term(term, &index(&required_path, i), causes);
        }
        let preferred_path = child(&kind_path, PREFERRED);
        for (i, weighted) in items(terms, PREFERRED).iter().enumerate() {
            let term_path = child(&index(&preferred_path, i), "podAffinityTerm");
            validate_pod_affinity_term(member(weighted, "podAffinityTerm"), &term_path, causes);
        }
    }
}

fn validate_node_selector_term(term: &Value, path: &str, causes: &mut Causes) {
    for (field, keys_are_labels) in [("matchExpressions", true), ("matchFields", false)] {
        let field_path = child(path, field);
        for (i, requirement) in items(term, field).iter().enumerate() {
            validate_node_selector_requirement(requirement, &index(&field_path, i), keys_are_labels, causes);
        }
    }
}

/// A node selector requirement: one of the six operators, with the values each takes.
fn validate_node_selector_requirement(requirement: &Value, path: &str, keys_are_labels: bool, causes: &mut Causes) {
    let values = items(requirement, "values");
    let values_path = child(path, "values");
    match text(requirement, "operator") {
        "In" | "NotIn" if values.is_empty() => {
            causes.required(&values_path, "must be specified when `operator` is 'In' or 'NotIn'")
        }
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            causes.forbidden(&values_path, "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
        }
        "Gt" | "Lt" if values.len() != 1 => {
            causes.required(&values_path, "must be specified single value when `operator` is 'Lt' or 'Gt'")
        }
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
        other => causes.invalid(&child(path, "operator"), &go_quote(other), "not a valid selector operator"),
    }
    if keys_are_labels {
        let key = text(requirement, "key");
        for msg in qualified_name(key) {
            causes.invalid(&child(path, "key"), &go_quote(key), &msg);
        }
    }
}

fn validate_pod_affinity_term(term: &Value, path: &str, causes: &mut Causes) {
    if let Some(selector) = present(term, "labelSelector") {
        validate_label_selector(selector, &child(path, "labelSelector"), causes);
    }
    let topology_key = text(term, "topologyKey");
    let topology_path = child(path, "topologyKey");
    if topology_key.is_empty() {
        causes.required(&topology_path, "can not be empty");
    }
    for msg in qualified_name(topology_key) {
        causes.invalid(&topology_path, &go_quote(topology_key), &msg);
    }
}

/// `obj[key]`, when set, must be one of `allowed` (listed in upstream's order).
fn validate_choice(obj: &Value, key: &str, path: &str, allowed: &[&str], causes: &mut Causes) {
    let Some(value) = present(obj, key) else { return };
    match value.as_str() {
        Some("") => causes.required(&child(path, key), ""),
        Some(s) if allowed.contains(&s) => {}
        _ => causes.not_supported(&child(path, key), &show(value), allowed),
    }
}

fn validate_restart_policy(spec: &Value, path: &str, causes: &mut Causes) {
    validate_choice(spec, "restartPolicy", path, &RESTART_POLICIES, causes);
}

/// Validates `spec.volumes` and returns the names of the volumes mounts may refer to.
fn validate_volumes(spec: &Value, path: &str, causes: &mut Causes) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut usable = HashSet::new();
    for (i, volume) in items(spec, "volumes").iter().enumerate() {
        let volume_path = index(path, i);
        let before = causes.len();
        validate_volume_source(volume, &volume_path, causes);
        let name = text(volume, "name");
        let name_path = child(&volume_path, "name");
        if name.is_empty() {
            causes.required(&name_path, "");
        } else {
            for msg in dns1123_label(name) {
                causes.invalid(&name_path, &go_quote(name), &msg);
            }
        }
        if seen.contains(name) {
            causes.duplicate(&name_path, &go_quote(name));
        }
        if causes.len() == before {
            usable.insert(name.to_owned());
        }
        seen.insert(name.to_owned());
    }
    usable
}

fn validate_volume_source(volume: &Value, path: &str, causes: &mut Causes) {
    let mut sources = 0;
    for source in VOLUME_SOURCES {
        let Some(detail) = present(volume, source) else { continue };
        sources += 1;
        let source_path = child(path, source);
        if sources > 1 {
            causes.forbidden(&source_path, "may not specify more than 1 volume type");
            continue;
        }
        let required_key = match source {
            "hostPath" => "path",
            "secret" => "secretName",
            "configMap" => "name",
            "persistentVolumeClaim" => "claimName",
            _ => continue,
        };
        if text(detail, required_key).is_empty() {
            causes.required(&child(&source_path, required_key), "");
        }
    }
    if sources == 0 {
        causes.required(path, "must specify a volume type");
    }
}

/// Whether a container is one of the pod's regular containers or an init container.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ContainerRole {
    Regular,
    Init,
}

fn validate_container(
    container: &Value,
    path: &str,
    role: ContainerRole,
    volumes: &HashSet<String>,
    names: &mut HashSet<String>,
    causes: &mut Causes,
) {
    let name = text(container, "name");
    let name_path = child(path, "name");
    if name.is_empty() {
        causes.required(&name_path, "");
    } else {
        for msg in dns1123_label(name) {
            causes.invalid(&name_path, &go_quote(name), &msg);
        }
    }
    if text(container, "image").is_empty() {
        causes.required(&child(path, "image"), "");
    }
    validate_choice(container, "terminationMessagePolicy", path, &["File", "FallbackToLogsOnError"], causes);
    validate_container_ports(items(container, "ports"), &child(path, "ports"), causes);
    validate_env(items(container, "env"), &child(path, "env"), causes);
    validate_resources(member(container, "resources"), &child(path, "resources"), causes);
    validate_volume_mounts(items(container, "volumeMounts"), &child(path, "volumeMounts"), volumes, causes);
    validate_choice(container, "imagePullPolicy", path, &["Always", "IfNotPresent", "Never"], causes);
    if names.contains(name) {
        causes.duplicate(&name_path, &go_quote(name));
    } else if role == ContainerRole::Regular || !name.is_empty() {
        names.insert(name.to_owned());
    }
    if let Some(policy) = present(container, "restartPolicy") {
        let policy_path = child(path, "restartPolicy");
        match role {
            ContainerRole::Regular => causes.forbidden(&policy_path, "may not be set for non-init containers"),
            ContainerRole::Init if policy.as_str() == Some("Always") => {}
            ContainerRole::Init => causes.not_supported(&policy_path, &show(policy), &["Always"]),
        }
    }
}

fn validate_container_ports(ports: &[Value], path: &str, causes: &mut Causes) {
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let port_path = index(path, i);
        let name = text(port, "name");
        if !name.is_empty() {
            let errs = port_name(name);
            if !errs.is_empty() {
                for msg in errs {
                    causes.invalid(&child(&port_path, "name"), &go_quote(name), &msg);
                }
            } else if !names.insert(name) {
                causes.duplicate(&child(&port_path, "name"), &go_quote(name));
            }
        }
        match int(port, "containerPort").unwrap_or(0) {
            0 => causes.required(&child(&port_path, "containerPort"), ""),
            n if !is_port_number(n) => causes.invalid(&child(&port_path, "containerPort"), &n.to_string(), PORT_RANGE),
            _ => {}
        }
        match int(port, "hostPort").unwrap_or(0) {
            0 => {}
            n if !is_port_number(n) => causes.invalid(&child(&port_path, "hostPort"), &n.to_string(), PORT_RANGE),
            _ => {}
        }
        validate_protocol(port, &port_path, causes);
    }
}

fn validate_protocol(port: &Value, path: &str, causes: &mut Causes) {
    let protocol_path = child(path, "protocol");
    match present(port, "protocol") {
        None => causes.required(&protocol_path, ""),
        Some(p) => match p.as_str() {
            Some("") => causes.required(&protocol_path, ""),
            Some(s) if PROTOCOLS.contains(&s) => {}
            _ => causes.not_supported(&protocol_path, &show(p), &PROTOCOLS),
        },
    }
}

fn validate_env(env: &[Value], path: &str, causes: &mut Causes) {
    for (i, var) in env.iter().enumerate() {
        let name_path = child(&index(path, i), "name");
        let name = text(var, "name");
        if name.is_empty() {
            causes.required(&name_path, "");
        } else if !name.bytes().all(|c| (b' '..=b'~').contains(&c) && c != b'=') {
            causes.invalid(
                &name_path,
                &go_quote(name),
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            );
        }
        if let Some(from) = present(var, "valueFrom") {
            validate_env_source(from, !text(var, "value").is_empty(), &child(&index(path, i), "valueFrom"), causes);
        }
    }
}

/// An env var's `valueFrom`: exactly one source, each with what it needs, and no `value` beside it.
fn validate_env_source(from: &Value, has_value: bool, path: &str, causes: &mut Causes) {
    const SOURCES: [(&str, &[&str]); 4] = [
        ("fieldRef", &["fieldPath"]),
        ("resourceFieldRef", &["resource"]),
        ("configMapKeyRef", &["key"]),
        ("secretKeyRef", &["key"]),
    ];
    let mut count = 0;
    for (source, required) in SOURCES {
        let Some(selector) = present(from, source) else { continue };
        count += 1;
        for key in required {
            if text(selector, key).is_empty() {
                causes.required(&child(&child(path, source), key), "");
            }
        }
    }
    if count == 0 {
        causes.invalid(
            path,
            &go_quote(""),
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        );
    } else if has_value {
        causes.invalid(path, &go_quote(""), "may not be specified when `value` is not empty");
    } else if count > 1 {
        causes.invalid(path, &go_quote(""), "may not have more than one field specified at a time");
    }
}

/// The grammar upstream names when a quantity does not parse.
pub const QUANTITY_FMT: &str = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";

/// A quantity's value as upstream's `resource.ParseQuantity` reads it (sign, decimal number, then a binary
/// suffix `Ki`..`Ei`, a decimal SI suffix `n`..`E`, or a decimal exponent `e<n>`); None when it does not parse.
/// Equal quantities give equal values (the decimal part is parsed once, correctly rounded), so comparisons
/// between the ways of writing one amount hold.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let (sign, unsigned) = match s.as_bytes().first() {
        Some(b'-') => (-1.0, &s[1..]),
        Some(b'+') => (1.0, &s[1..]),
        _ => (1.0, s),
    };
    let number_len = unsigned.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
    let (number, suffix) = unsigned.split_at(number_len);
    let digits = number.bytes().filter(u8::is_ascii_digit).count();
    if digits == 0 || number.len() - digits > 1 {
        return None;
    }
    let (decimal_exponent, binary_exponent) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        exponent => {
            let n = exponent.strip_prefix(['e', 'E'])?;
            if n.is_empty() || !n.trim_start_matches(['+', '-']).bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (n.parse::<i32>().ok()?, 0)
        }
    };
    let whole = if number.starts_with('.') { format!("0{number}") } else { number.to_owned() };
    let whole = whole.strip_suffix('.').unwrap_or(&whole);
    let value: f64 = format!("{whole}e{decimal_exponent}").parse().ok()?;
    Some(sign * value * 2f64.powi(binary_exponent))
}

/// The first quantity in any `resources.limits` or `resources.requests` of `obj` that does not parse.
/// Upstream cannot decode such a body at all, so the API answers it with 400 before validating.
pub fn unparsable_quantity(obj: &Value) -> Option<String> {
    match obj {
        Value::Object(map) => {
            let resources = map.get("resources").unwrap_or(&NULL);
            for list in ["limits", "requests"] {
                for (_, quantity) in sorted_entries(resources.get(list)) {
                    if let Some(q) = quantity.as_str().filter(|q| parse_quantity(q).is_none()) {
                        return Some(q.to_owned());
                    }
                }
            }
            map.values().find_map(unparsable_quantity)
        }
        Value::Array(values) => values.iter().find_map(unparsable_quantity),
        _ => None,
    }
}

/// A container's requests and limits: none negative, and no request above its limit.
fn validate_resources(resources: &Value, path: &str, causes: &mut Causes) {
    let limits_path = child(path, "limits");
    for (name, quantity) in sorted_entries(resources.get("limits")) {
        let q = text_of(quantity);
        if parse_quantity(q).is_some_and(|v| v < 0.0) {
            causes.invalid(&keyed(&limits_path, name), &go_quote(q), NEGATIVE);
        }
    }
    let requests_path = child(path, "requests");
    for (name, quantity) in sorted_entries(resources.get("requests")) {
        let q = text_of(quantity);
        let Some(request) = parse_quantity(q) else { continue };
        if request < 0.0 {
            causes.invalid(&keyed(&requests_path, name), &go_quote(q), NEGATIVE);
        }
        let limit = member(member(resources, "limits"), name).as_str().unwrap_or("");
        if parse_quantity(limit).is_some_and(|limit| request > limit) {
            causes.invalid(
                &requests_path,
                &go_quote(q),
                &format!("must be less than or equal to {name} limit of {limit}"),
            );
        }
    }
}

fn validate_volume_mounts(mounts: &[Value], path: &str, volumes: &HashSet<String>, causes: &mut Causes) {
    let mut mount_points = HashSet::new();
    for (i, mount) in mounts.iter().enumerate() {
        let mount_path = index(path, i);
        let name = text(mount, "name");
        if name.is_empty() {
            causes.required(&child(&mount_path, "name"), "");
        }
        if !volumes.contains(name) {
            causes.not_found(&child(&mount_path, "name"), &go_quote(name));
        }
        let target = text(mount, "mountPath");
        if target.is_empty() {
            causes.required(&child(&mount_path, "mountPath"), "");
        }
        if !mount_points.insert(target) {
            causes.invalid(&child(&mount_path, "mountPath"), &go_quote(target), "must be unique");
        }
        let sub_path = text(mount, "subPath");
        if !sub_path.is_empty() {
            let sub_path_field = child(&mount_path, "subPath");
            if sub_path.starts_with('/') {
                causes.invalid(&sub_path_field, &go_quote(sub_path), "must be a relative path");
            }
            if sub_path.split('/').any(|part| part == "..") {
                causes.invalid(&sub_path_field, &go_quote(sub_path), "must not contain '..'");
            } else if sub_path.starts_with("..") {
                causes.invalid(&sub_path_field, &go_quote(sub_path), "must not start with '..'");
            }
        }
    }
}

fn validate_tolerations(tolerations: &[Value], path: &str, causes: &mut Causes) {
    for (i, toleration) in tolerations.iter().enumerate() {
        let toleration_path = index(path, i);
        let key = text(toleration, "key");
        let operator = text(toleration, "operator");
        let effect = text(toleration, "effect");
        for msg in if key.is_empty() { Vec::new() } else { qualified_name(key) } {
            causes.invalid(&child(&toleration_path, "key"), &go_quote(key), &msg);
        }
        if key.is_empty() && operator != "Exists" {
            causes.invalid(
                &child(&toleration_path, "operator"),
                &go_quote(operator),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            );
        }
        if present(toleration, "tolerationSeconds").is_some() && effect != "NoExecute" {
            causes.invalid(
                &child(&toleration_path, "effect"),
                &go_quote(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            );
        }
        let value = text(toleration, "value");
        match operator {
            "Equal" | "" => {
                let errs = label_value(value);
                if !errs.is_empty() {
                    causes.invalid(&child(&toleration_path, "operator"), &go_quote(value), &errs.join(";"));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    causes.invalid(
                        &child(&toleration_path, "operator"),
                        &toleration.to_string(),
                        "value must be empty when `operator` is 'Exists'",
                    );
                }
            }
            other => causes.not_supported(&child(&toleration_path, "operator"), &go_quote(other), &["Equal", "Exists"]),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            causes.not_supported(
                &child(&toleration_path, "effect"),
                &go_quote(effect),
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            );
        }
    }
}

const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

pub(crate) fn validate_pod_update(old: &Value, new: &Value, causes: &mut Causes) {
    let (old, new) = (member(old, "spec"), member(new, "spec"));
    if items(old, "containers").len() != items(new, "containers").len() {
        causes.forbidden("spec.containers", "pod updates may not add or remove containers");
        return;
    }
    if let Some(seconds) = int(new, "activeDeadlineSeconds") {
        if !(0..=MAX_INT32).contains(&seconds) {
            let detail = format!("must be between 0 and {MAX_INT32}, inclusive");
            causes.invalid("spec.activeDeadlineSeconds", &seconds.to_string(), &detail);
            return;
        }
        if int(old, "activeDeadlineSeconds").is_some_and(|previous| previous < seconds) {
            causes.invalid(
                "spec.activeDeadlineSeconds",
                &seconds.to_string(),
                "must be less than or equal to previous value",
            );
            return;
        }
    } else if present(old, "activeDeadlineSeconds").is_some() {
        causes.invalid("spec.activeDeadlineSeconds", "null", "must not update from a positive integer to nil value");
    }
    if !tolerations_only_added(items(old, "tolerations"), items(new, "tolerations")) {
        causes.forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds");
    }
    let mut munged = new.clone();
    if let Some(spec) = munged.as_object_mut() {
        for key in ["containers", "initContainers"] {
            let old_images: Vec<Option<Value>> = items(old, key).iter().map(|c| present(c, "image").cloned()).collect();
            let list = spec.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten();
            for (container, old_image) in list.zip(old_images) {
                if let Some(container) = container.as_object_mut() {
                    match old_image {
                        Some(image) => container.insert("image".to_owned(), image),
                        None => container.remove("image"),
                    };
                }
            }
        }
        for key in ["activeDeadlineSeconds", "tolerations", "schedulingGates"] {
            match present(old, key) {
                Some(value) => spec.insert(key.to_owned(), value.clone()),
                None => spec.remove(key),
            };
        }
        if text(old, "nodeName").is_empty() {
            spec.remove("nodeName");
        }
        let old_grace = int(old, "terminationGracePeriodSeconds");
        if old_grace.is_some_and(|g| g < 0) && int(new, "terminationGracePeriodSeconds") == Some(1) {
            spec.insert("terminationGracePeriodSeconds".to_owned(), Value::from(old_grace.unwrap_or(0)));
        }
    }
    let mut old_spec = old.clone();
    if let Some(spec) = old_spec.as_object_mut() {
        if text(old, "nodeName").is_empty() {
            spec.remove("nodeName");
        }
    }
    if !same(Some(&old_spec), Some(&munged)) {
        causes.forbidden("spec", POD_UPDATE_FORBIDDEN);
    }
}

/// Every old toleration is still there, except that its `tolerationSeconds` may differ.
fn tolerations_only_added(old: &[Value], new: &[Value]) -> bool {
    let without_seconds = |t: &Value| {
        let mut t = t.clone();
        if let Some(map) = t.as_object_mut() {
            map.remove("tolerationSeconds");
        }
        t
    };
    old.iter().all(|o| {
        let o = without_seconds(o);
        new.iter().any(|n| same(Some(&o), Some(&without_seconds(n))))
    })
}

// ---------------------------------------------------------------------------------------------------------
// Workloads (apps).

/// The rules a replicated pod template obeys: selected by the selector, restarted Always, no deadline.
fn validate_replicated_template(
    selection: &Selection,
    spec: &Value,
    owner: &str,
    claim_names: &[&str],
    causes: &mut Causes,
) {
    let template = member(spec, "template");
    validate_template_selected(selection, template, causes);
    validate_pod_template(template, "spec.template", claim_names, causes);
    let template_spec = member(template, "spec");
    let policy = text(template_spec, "restartPolicy");
    if policy != "Always" {
        causes.not_supported("spec.template.spec.restartPolicy", &go_quote(policy), &["Always"]);
    }
    if present(template_spec, "activeDeadlineSeconds").is_some() {
        let detail = format!("activeDeadlineSeconds in {owner} is not Supported");
        causes.forbidden("spec.template.spec.activeDeadlineSeconds", &detail);
    }
}

pub(crate) fn validate_deployment(obj: &Value, causes: &mut Causes) {
    let spec = member(obj, "spec");
    causes.nonnegative(spec, "replicas", "spec");
    let selection = validate_workload_selector(spec, Workload::Deployment, causes);
    validate_replicated_template(&selection, spec, "ReplicaSet", &[], causes);
    validate_deployment_strategy(member(spec, "strategy"), causes);
    causes.nonnegative(spec, "minReadySeconds", "spec");
    causes.nonnegative(spec, "revisionHistoryLimit", "spec");
    if let Some(deadline) = int(spec, "progressDeadlineSeconds") {
        causes.nonnegative(spec, "progressDeadlineSeconds", "spec");
        if deadline <= int(spec, "minReadySeconds").unwrap_or(0) {
            causes.invalid(
                "spec.progressDeadlineSeconds",
                &deadline.to_string(),
                "must be greater than minReadySeconds",
            );
        }
    }
}

fn validate_deployment_strategy(strategy: &Value, causes: &mut Causes) {
    let rolling = present(strategy, "rollingUpdate");
    match text(strategy, "type") {
        "Recreate" => {
            if rolling.is_some() {
                causes.forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                );
            }
        }
        "RollingUpdate" => match rolling {
            None => causes.required("spec.strategy.rollingUpdate", "this should be defaulted and never be nil"),
            Some(rolling) => validate_rolling_update(rolling, "spec.strategy.rollingUpdate", causes),
        },
        _ => causes.not_supported(
            "spec.strategy.type",
            &show_opt(present(strategy, "type")),
            &["Recreate", "RollingUpdate"],
        ),
    }
}

/// `maxSurge` and `maxUnavailable` of a Deployment's or DaemonSet's rolling update.
fn validate_rolling_update(rolling: &Value, path: &str, causes: &mut Causes) {
    let unavailable = present(rolling, "maxUnavailable");
    let surge = present(rolling, "maxSurge");
    validate_int_or_percent(unavailable, &child(path, "maxUnavailable"), causes);
    validate_int_or_percent(surge, &child(path, "maxSurge"), causes);
    if int_or_percent_value(unavailable) == 0 && int_or_percent_value(surge) == 0 {
        causes.invalid(
            &child(path, "maxUnavailable"),
            &show_int_or_string(unavailable),
            "may not be 0 when `maxSurge` is 0",
        );
    }
    if let Some(Value::String(s)) = unavailable {
        if percent(s).is_some_and(|p| p > 100) {
            causes.invalid(
                &child(path, "maxUnavailable"),
                &show_int_or_string(unavailable),
                "must not be greater than 100%",
            );
        }
    }
}

fn percent(s: &str) -> Option<i64> {
    let digits = s.strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn validate_int_or_percent(value: Option<&Value>, path: &str, causes: &mut Causes) {
    match value {
        Some(Value::String(s)) if percent(s).is_none() => causes.invalid(
            path,
            &show_int_or_string(value),
            &regex_error(
                "a valid percent string must be a numeric string followed by an ending '%'",
                "[0-9]+%",
                &["1%", "93%"],
            ),
        ),
        Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n < 0) => causes.invalid(path, &n.to_string(), NEGATIVE),
        _ => {}
    }
}

fn int_or_percent_value(value: Option<&Value>) -> i64 {
    match value {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => percent(s).or_else(|| s.parse().ok()).unwrap_or(0),
        _ => 0,
    }
}

pub(crate) fn validate_replica_set(obj: &Value, causes: &mut Causes) {
    let spec = member(obj, "spec");
    causes.nonnegative(spec, "replicas", "spec");
    causes.nonnegative(spec, "minReadySeconds", "spec");
    let selection = validate_workload_selector(spec, Workload::ReplicaSet, causes);
    validate_replicated_template(&selection, spec, "ReplicaSet", &[], causes);
}

pub(crate) fn validate_stateful_set(obj: &Value, causes: &mut Causes) {
    let spec = member(obj, "spec");
    if let Some(policy) = present(spec, "podManagementPolicy") {
        match policy.as_str() {
            Some("OrderedReady" | "Parallel") => {}
            Some("") => causes.required("spec.podManagementPolicy", ""),
            _ => causes.invalid("spec.podManagementPolicy", &show(policy), "must be 'OrderedReady' or 'Parallel'"),
        }
    }
    if let Some(strategy) = present(spec, "updateStrategy") {
        match text(strategy, "type") {
            "" => causes.required("spec.updateStrategy", ""),
            "OnDelete" => {
                if let Some(rolling) = present(strategy, "rollingUpdate") {
                    causes.invalid(
                        "spec.updateStrategy.rollingUpdate",
                        &rolling.to_string(),
                        "only allowed for updateStrategy 'RollingUpdate'",
                    );
                }
            }
            "RollingUpdate" => {
                let rolling = member(strategy, "rollingUpdate");
                causes.nonnegative(rolling, "partition", "spec.updateStrategy.rollingUpdate");
                validate_int_or_percent(
                    present(rolling, "maxUnavailable"),
                    "spec.updateStrategy.rollingUpdate.maxUnavailable",
                    causes,
                );
            }
            _ => causes.invalid("spec.updateStrategy", &strategy.to_string(), "must be 'RollingUpdate' or 'OnDelete'"),
        }
    }
    causes.nonnegative(spec, "replicas", "spec");
    causes.nonnegative(spec, "minReadySeconds", "spec");
    let selection = validate_workload_selector(spec, Workload::StatefulSet, causes);
    let claim_names: Vec<&str> =
        items(spec, "volumeClaimTemplates").iter().map(|t| text(member(t, "metadata"), "name")).collect();
    validate_replicated_template(&selection, spec, "StatefulSet", &claim_names, causes);
}

pub(crate) fn validate_daemon_set(obj: &Value, causes: &mut Causes) {
    let spec = member(obj, "spec");
    let selection = validate_workload_selector(spec, Workload::DaemonSet, causes);
    validate_replicated_template(&selection, spec, "DaemonSet", &[], causes);
    causes.nonnegative(spec, "minReadySeconds", "spec");
    if let Some(strategy) = present(spec, "updateStrategy") {
        match text(strategy, "type") {
            "OnDelete" => {}
            "RollingUpdate" => match present(strategy, "rollingUpdate") {
                None => causes.required("spec.updateStrategy.rollingUpdate", ""),
                Some(rolling) => validate_rolling_update(rolling, "spec.updateStrategy.rollingUpdate", causes),
            },
            _ => causes.not_supported("spec.updateStrategy", &strategy.to_string(), &["RollingUpdate", "OnDelete"]),
        }
    }
    causes.nonnegative(spec, "revisionHistoryLimit", "spec");
}

pub(crate) fn validate_replication_controller(obj: &Value, causes: &mut Causes) {
    let spec = member(obj, "spec");
    causes.nonnegative(spec, "minReadySeconds", "spec");
    let selector = present(spec, "selector").filter(|s| s.as_object().is_some_and(|m| !m.is_empty()));
    if selector.is_none() {
        causes.required("spec.selector", "");
    }
    validate_labels(selector, "spec.selector", causes);
    causes.nonnegative(spec, "replicas", "spec");
    let Some(template) = present(spec, "template") else {
        causes.required("spec.template", "");
        return;
    };
    let labels = member(template, "metadata").get("labels");
    if let Some(selector) = selector {
        let matches = sorted_entries(Some(selector))
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k.as_str())).and_then(Value::as_str) == v.as_str());
        if !matches {
            causes.invalid("spec.template.metadata.labels", &show_string_map(labels), SELECTOR_MISMATCH);
        }
    }
    validate_pod_template(template, "spec.template", &[], causes);
    let template_spec = member(template, "spec");
    let policy = text(template_spec, "restartPolicy");
    if policy != "Always" {
        causes.not_supported("spec.template.spec.restartPolicy", &go_quote(policy), &["Always"]);
    }
    if present(template_spec, "activeDeadlineSeconds").is_some() {
        causes.forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in ReplicationController is not Supported",
        );
    }
}

pub(crate) fn validate_selector_unchanged(old: &Value, new: &Value, causes: &mut Causes) {
    let (old, new) = (member(old, "spec"), member(new, "spec"));
    let (old_selector, new_selector) = (present(old, "selector"), present(new, "selector"));
    if !same(old_selector, new_selector) {
        causes.invalid("spec.selector", &new_selector.map_or_else(|| "null".to_owned(), show_selector), IMMUTABLE);
    }
}

const STATEFUL_SET_MUTABLE: [&str; 7] = [
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

pub(crate) fn validate_stateful_set_update(old: &Value, new: &Value, causes: &mut Causes) {
    let (old, new) = (member(old, "spec"), member(new, "spec"));
    let strip = |spec: &Value| {
        let mut spec = spec.clone();
        if let Some(map) = spec.as_object_mut() {
            for key in STATEFUL_SET_MUTABLE {
                map.remove(key);
            }
        }
        spec
    };
    if !same(Some(&strip(old)), Some(&strip(new))) {
        causes.forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        );
    }
}

// ---------------------------------------------------------------------------------------------------------
// Services.

const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const NODE_PORT_MIN: i64 = 30000;
const NODE_PORT_MAX: i64 = 32767;

pub(crate) fn validate_service(obj: &Value, causes: &mut Causes) {
    let spec = member(obj, "spec");
    let service_type = text(spec, "type");
    let cluster_ip = text(spec, "clusterIP");
    let headless = cluster_ip == "None";
    let ports = items(spec, "ports");
    if ports.is_empty() && !headless && service_type != "ExternalName" {
        causes.required("spec.ports", "");
    }
    if service_type == "ExternalName" {
        let has_ips = !cluster_ip.is_empty() || items(spec, "clusterIPs").iter().any(|ip| !text_of(ip).is_empty());
        if has_ips {
            causes.forbidden("spec.clusterIPs", "may not be set for ExternalName services");
        }
        let external = text(spec, "externalName");
        let external = external.strip_suffix('.').unwrap_or(external);
        if external.is_empty() {
            causes.required("spec.externalName", "");
        } else {
            for msg in dns1123_subdomain(external) {
                causes.invalid("spec.externalName", &go_quote(external), &msg);
            }
        }
    } else {
        validate_cluster_ips(spec, causes);
    }
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        validate_service_port(port, ports.len() > 1, &mut names, &index("spec.ports", i), causes);
    }
    validate_labels(spec.get("selector"), "spec.selector", causes);
    if let Some(affinity) = present(spec, "sessionAffinity") {
        match affinity.as_str() {
            Some("ClientIP" | "None") => {}
            Some("") => causes.required("spec.sessionAffinity", ""),
            _ => causes.not_supported("spec.sessionAffinity", &show(affinity), &["ClientIP", "None"]),
        }
    }
    match present(spec, "type") {
        None => causes.required("spec.type", ""),
        Some(t) => match t.as_str() {
            Some("") => causes.required("spec.type", ""),
            Some(s) if SERVICE_TYPES.contains(&s) => {}
            _ => causes.not_supported("spec.type", &show(t), &SERVICE_TYPES),
        },
    }
    let mut node_ports = HashSet::new();
    let mut port_keys = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let port_path = index("spec.ports", i);
        let node_port = int(port, "nodePort").unwrap_or(0);
        let protocol = text(port, "protocol");
        if node_port != 0 {
            if service_type == "ClusterIP" {
                causes.forbidden(&child(&port_path, "nodePort"), "may not be used when `type` is 'ClusterIP'");
            } else if !(NODE_PORT_MIN..=NODE_PORT_MAX).contains(&node_port) {
                causes.invalid(
                    &child(&port_path, "nodePort"),
                    &node_port.to_string(),
                    &format!(
                        "provided port is not in the valid range. The range of valid ports is {NODE_PORT_MIN}-{NODE_PORT_MAX}"
                    ),
                );
            }
            if !node_ports.insert((protocol, node_port)) {
                causes.duplicate(&child(&port_path, "nodePort"), &node_port.to_string());
            }
        }
        let number = int(port, "port").unwrap_or(0);
        if !port_keys.insert((protocol, number)) {
            let shown = format!(
                "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{number}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                go_quote(protocol)
            );
            causes.duplicate(&port_path, &shown);
        }
    }
}

fn text_of(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

fn validate_cluster_ips(spec: &Value, causes: &mut Causes) {
    const DETAIL: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
    let ips = items(spec, "clusterIPs");
    if ips.is_empty() {
        let ip = text(spec, "clusterIP");
        if !ip.is_empty() && ip != "None" && ip.parse::<std::net::IpAddr>().is_err() {
            causes.invalid("spec.clusterIP", &go_quote(ip), DETAIL);
        }
        return;
    }
    let shown = show_string_list(spec.get("clusterIPs"));
    // Defaulting fills in whichever of the two the client left out; both given must agree.
    let cluster_ip = text(spec, "clusterIP");
    if !cluster_ip.is_empty() && text_of(&ips[0]) != cluster_ip {
        causes.invalid("spec.clusterIPs", &shown, "first value must match `clusterIP`");
    }
    let mut families = Vec::new();
    let mut bad = false;
    for (i, ip) in ips.iter().enumerate() {
        let ip = text_of(ip);
        if ip == "None" && i == 0 {
            if ips.len() > 1 {
                bad = true;
                causes.invalid("spec.clusterIPs", &shown, "'None' must be the first and only value");
            }
            continue;
        }
        match ip.parse::<std::net::IpAddr>() {
            Ok(parsed) => families.push(parsed.is_ipv4()),
            Err(_) => {
                bad = true;
                if !ip.is_empty() {
                    causes.invalid(&index("spec.clusterIPs", i), &go_quote(ip), DETAIL);
                }
            }
        }
    }
    if ips.len() > 2 {
        causes.invalid("spec.clusterIPs", &shown, "may only hold up to 2 values");
    }
    // A second IP is the other family's: dual stack holds one IP of each.
    if !bad && families.len() > 1 && families.iter().all(|v4| *v4 == families[0]) {
        causes.invalid("spec.clusterIPs", &shown, "may specify no more than one IP for each IP family");
    }
}

fn validate_service_port(
    port: &Value,
    name_required: bool,
    names: &mut HashSet<String>,
    path: &str,
    causes: &mut Causes,
) {
    let name = text(port, "name");
    let name_path = child(path, "name");
    if name_required && name.is_empty() {
        causes.required(&name_path, "");
    } else if !name.is_empty() {
        for msg in dns1123_label(name) {
            causes.invalid(&name_path, &go_quote(name), &msg);
        }
        if !names.insert(name.to_owned()) {
            causes.duplicate(&name_path, &go_quote(name));
        }
    }
    let number = int(port, "port").unwrap_or(0);
    if !is_port_number(number) {
        causes.invalid(&child(path, "port"), &number.to_string(), PORT_RANGE);
    }
    validate_protocol(port, path, causes);
    let target_path = child(path, "targetPort");
    match present(port, "targetPort") {
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(0);
            if !is_port_number(n) {
                causes.invalid(&target_path, &n.to_string(), PORT_RANGE);
            }
        }
        Some(Value::String(s)) => {
            for msg in port_name(s) {
                causes.invalid(&target_path, &go_quote(s), &msg);
            }
        }
        _ => {}
    }
}

pub(crate) fn validate_service_update(old: &Value, new: &Value, causes: &mut Causes) {
    let (old, new) = (member(old, "spec"), member(new, "spec"));
    let uses_cluster_ip = |spec: &Value| text(spec, "type") != "ExternalName";
    let (old_ip, new_ip) = (text(old, "clusterIP"), text(new, "clusterIP"));
    // An empty clusterIP on the new version keeps the allocated one.
    if uses_cluster_ip(old) && uses_cluster_ip(new) && !old_ip.is_empty() && !new_ip.is_empty() && old_ip != new_ip {
        causes.invalid("spec.clusterIP", &go_quote(new_ip), IMMUTABLE);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Jobs and CronJobs (batch).

pub(crate) fn validate_job(obj: &Value, causes: &mut Causes) {
    let spec = member(obj, "spec");
    if let Some(selector) = present(spec, "selector") {
        let before = causes.len();
        validate_label_selector(selector, "spec.selector", causes);
        let template_labels = member(member(spec, "template"), "metadata").get("labels");
        if causes.len() == before && !selector_is_empty(selector) && !selector_matches(selector, template_labels) {
            causes.invalid("spec.template.metadata.labels", &show_string_map(template_labels), SELECTOR_MISMATCH);
        }
    }
    validate_job_spec(spec, "spec", causes);
}

fn validate_job_spec(spec: &Value, path: &str, causes: &mut Causes) {
    causes.nonnegative(spec, "parallelism", path);
    causes.nonnegative(spec, "completions", path);
    causes.nonnegative(spec, "activeDeadlineSeconds", path);
    causes.nonnegative(spec, "backoffLimit", path);
    causes.nonnegative(spec, "ttlSecondsAfterFinished", path);
    if let Some(mode) = present(spec, "completionMode") {
        match mode.as_str() {
            Some("NonIndexed") => {}
            Some("Indexed") => {
                if present(spec, "completions").is_none() {
                    causes.required(&child(path, "completions"), "when completion mode is Indexed");
                }
            }
            _ => causes.not_supported(&child(path, "completionMode"), &show(mode), &["NonIndexed", "Indexed"]),
        }
    }
    let template_path = child(path, "template");
    validate_pod_template(member(spec, "template"), &template_path, &[], causes);
    let policy_path = child(&template_path, "spec.restartPolicy");
    match text(member(member(spec, "template"), "spec"), "restartPolicy") {
        "OnFailure" | "Never" => {}
        "Always" | "" => causes.required(&policy_path, "valid values: \"OnFailure\", \"Never\""),
        other => causes.not_supported(&policy_path, &go_quote(other), &["OnFailure", "Never"]),
    }
}

pub(crate) fn validate_job_update(old: &Value, new: &Value, causes: &mut Causes) {
    let (old, new) = (member(old, "spec"), member(new, "spec"));
    if present(old, "selector").is_some() {
        let (old_selector, new_selector) = (present(old, "selector"), present(new, "selector"));
        if !same(old_selector, new_selector) {
            causes.invalid("spec.selector", &new_selector.map_or_else(|| "null".to_owned(), show_selector), IMMUTABLE);
        }
    }
    validate_unchanged(present(old, "template"), present(new, "template"), "spec.template", causes);
    validate_unchanged(present(old, "completionMode"), present(new, "completionMode"), "spec.completionMode", causes);
}

const CRON_JOB_NAME_MAX: usize = 52;

pub(crate) fn validate_cron_job(obj: &Value, causes: &mut Causes) {
    let name = text(member(obj, "metadata"), "name");
    if name.len() > CRON_JOB_NAME_MAX {
        causes.invalid("metadata.name", &go_quote(name), "must be no more than 52 characters");
    }
    let spec = member(obj, "spec");
    let schedule = text(spec, "schedule");
    if schedule.is_empty() {
        causes.required("spec.schedule", "");
    } else {
        if let Err(msg) = parse_cron_schedule(schedule) {
            causes.invalid("spec.schedule", &go_quote(schedule), &msg);
        }
        if schedule.contains("TZ") {
            causes.invalid(
                "spec.schedule",
                &go_quote(schedule),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            );
        }
    }
    causes.nonnegative(spec, "startingDeadlineSeconds", "spec");
    match present(spec, "concurrencyPolicy") {
        None => causes.required("spec.concurrencyPolicy", ""),
        Some(policy) => match policy.as_str() {
            Some("Allow" | "Forbid" | "Replace") => {}
            Some("") => causes.required("spec.concurrencyPolicy", ""),
            _ => causes.not_supported("spec.concurrencyPolicy", &show(policy), &["Allow", "Forbid", "Replace"]),
        },
    }
    let job_spec = member(member(spec, "jobTemplate"), "spec");
    validate_job_spec(job_spec, "spec.jobTemplate.spec", causes);
    if let Some(selector) = present(job_spec, "selector") {
        causes.invalid("spec.jobTemplate.spec.selector", &show_selector(selector), "`selector` will be auto-generated");
    }
    if job_spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        causes.not_supported("spec.jobTemplate.spec.manualSelector", "true", &["nil", "false"]);
    }
    causes.nonnegative(spec, "successfulJobsHistoryLimit", "spec");
    causes.nonnegative(spec, "failedJobsHistoryLimit", "spec");
}

/// One field of a standard five-field cron schedule.
struct CronField {
    min: i64,
    max: i64,
    names: &'static [(&'static str, i64)],
}

const MONTH_NAMES: [(&str, i64); 12] = [
    ("jan", 1),
    ("feb", 2),
    ("mar", 3),
    ("apr", 4),
    ("may", 5),
    ("jun", 6),
    ("jul", 7),
    ("aug", 8),
    ("sep", 9),
    ("oct", 10),
    ("nov", 11),
    ("dec", 12),
];
const DAY_NAMES: [(&str, i64); 7] =
    [("sun", 0), ("mon", 1), ("tue", 2), ("wed", 3), ("thu", 4), ("fri", 5), ("sat", 6)];

const CRON_FIELDS: [CronField; 5] = [
    CronField { min: 0, max: 59, names: &[] },
    CronField { min: 0, max: 23, names: &[] },
    CronField { min: 1, max: 31, names: &[] },
    CronField { min: 1, max: 12, names: &MONTH_NAMES },
    CronField { min: 0, max: 6, names: &DAY_NAMES },
];

const CRON_DESCRIPTORS: [&str; 7] = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];

/// Parses a schedule the way the CronJob controller's cron library does, returning its error text.
fn parse_cron_schedule(schedule: &str) -> Result<(), String> {
    if schedule.is_empty() {
        return Err("empty spec string".to_owned());
    }
    let mut spec = schedule;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        // The zone itself is reported by the TZ rule; the rest must still parse.
        spec = spec.split_once(' ').map_or("", |(_, rest)| rest.trim());
    }
    if spec.starts_with('@') {
        if CRON_DESCRIPTORS.contains(&spec) {
            return Ok(());
        }
        if let Some(duration) = spec.strip_prefix("@every ") {
            return go_duration(duration).map_err(|e| format!("failed to parse duration {spec}: {e}"));
        }
        return Err(format!("unrecognized descriptor: {spec}"));
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != CRON_FIELDS.len() {
        return Err(format!("expected exactly 5 fields, found {}: [{}]", fields.len(), fields.join(" ")));
    }
    for (field, bounds) in fields.iter().zip(CRON_FIELDS.iter()) {
        for expr in field.split(',').filter(|e| !e.is_empty()) {
            parse_cron_range(expr, bounds)?;
        }
    }
    Ok(())
}

fn parse_cron_range(expr: &str, bounds: &CronField) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let (start, mut end) = if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (bounds.min, bounds.max)
    } else {
        let start = cron_int_or_name(low_and_high[0], bounds.names)?;
        match low_and_high.len() {
            1 => (start, start),
            2 => (start, cron_int_or_name(low_and_high[1], bounds.names)?),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = cron_int(range_and_step[1])?;
            if low_and_high.len() == 1 {
                end = bounds.max;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < bounds.min {
        return Err(format!("beginning of range ({start}) below minimum ({}): {expr}", bounds.min));
    }
    if end > bounds.max {
        return Err(format!("end of range ({end}) above maximum ({}): {expr}", bounds.max));
    }
    if start > end {
        return Err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}"));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

fn cron_int_or_name(expr: &str, names: &[(&str, i64)]) -> Result<i64, String> {
    let lower = expr.to_ascii_lowercase();
    match names.iter().find(|(name, _)| *name == lower) {
        Some((_, n)) => Ok(*n),
        None => cron_int(expr),
    }
}

fn cron_int(expr: &str) -> Result<i64, String> {
    let digits = expr.strip_prefix(['+', '-']).unwrap_or(expr);
    let syntax_ok = !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit());
    let parsed = if syntax_ok { expr.parse::<i64>().ok() } else { None };
    match parsed {
        Some(n) if n < 0 => Err(format!("negative number ({n}) not allowed: {expr}")),
        Some(n) => Ok(n),
        None => {
            let why = if syntax_ok { "value out of range" } else { "invalid syntax" };
            Err(format!("failed to parse int from {expr}: strconv.Atoi: parsing {}: {why}", go_quote(expr)))
        }
    }
}

/// Checks a Go duration string such as `1h30m`, returning Go's error text.
fn go_duration(s: &str) -> Result<(), String> {
    let invalid = || format!("time: invalid duration {}", go_quote(s));
    let mut rest = s.strip_prefix(['+', '-']).unwrap_or(s);
    if rest == "0" {
        return Ok(());
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let number_len = rest.bytes().take_while(|c| c.is_ascii_digit() || *c == b'.').count();
        let number = &rest[..number_len];
        if number.is_empty() || number == "." {
            return Err(invalid());
        }
        rest = &rest[number_len..];
        let unit_len = rest.bytes().take_while(|c| !(c.is_ascii_digit() || *c == b'.')).count();
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {}", go_quote(s)));
        }
        if !matches!(unit, "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h") {
            return Err(format!("time: unknown unit {} in duration {}", go_quote(unit), go_quote(s)));
        }
        rest = &rest[unit_len..];
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// ConfigMaps and Secrets.

const MAX_DATA_SIZE: usize = 1024 * 1024;

pub(crate) fn validate_config_map(obj: &Value, causes: &mut Causes) {
    let (data, binary) = (obj.get("data"), obj.get("binaryData"));
    let mut total = 0;
    for (key, value) in sorted_entries(data) {
        let path = keyed("data", key);
        for msg in config_map_key(key) {
            causes.invalid(&path, &go_quote(key), &msg);
        }
        if binary.and_then(|b| b.get(key.as_str())).is_some() {
            causes.invalid(&path, &go_quote(key), "duplicate of key present in binaryData");
        }
        total += value.as_str().map_or(0, str::len);
    }
    for (key, value) in sorted_entries(binary) {
        let path = keyed("binaryData", key);
        for msg in config_map_key(key) {
            causes.invalid(&path, &go_quote(key), &msg);
        }
        if data.and_then(|d| d.get(key.as_str())).is_some() {
            causes.invalid(&path, &go_quote(key), "duplicate of key present in data");
        }
        total += value.as_str().map_or(0, base64_decoded_len);
    }
    if total > MAX_DATA_SIZE {
        causes.too_long("", MAX_DATA_SIZE);
    }
}

fn base64_decoded_len(encoded: &str) -> usize {
    encoded.trim_end_matches('=').len() * 3 / 4
}

/// Keys each Secret type requires in its data.
fn secret_required_keys(secret_type: &str) -> &'static [&'static str] {
    match secret_type {
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        _ => &[],
    }
}

pub(crate) fn validate_secret(obj: &Value, causes: &mut Causes) {
    let data = obj.get("data");
    let string_data = obj.get("stringData");
    let mut total = 0;
    for (key, value) in sorted_entries(data) {
        for msg in config_map_key(key) {
            causes.invalid(&keyed("data", key), &go_quote(key), &msg);
        }
        total += value.as_str().map_or(0, base64_decoded_len);
    }
    for (key, value) in sorted_entries(string_data) {
        if data.and_then(|d| d.get(key.as_str())).is_none() {
            for msg in config_map_key(key) {
                causes.invalid(&keyed("data", key), &go_quote(key), &msg);
            }
        }
        total += value.as_str().map_or(0, str::len);
    }
    if total > MAX_DATA_SIZE {
        causes.too_long("data", MAX_DATA_SIZE);
    }
    let has_key = |key: &str| data.and_then(|d| d.get(key)).is_some() || string_data.and_then(|d| d.get(key)).is_some();
    let secret_type = text(obj, "type");
    for key in secret_required_keys(secret_type) {
        if !has_key(key) {
            causes.required(&keyed("data", key), "");
        }
    }
    match secret_type {
        "kubernetes.io/basic-auth" if !has_key("username") && !has_key("password") => {
            causes.required("data[username]", "");
            causes.required("data[password]", "");
        }
        "kubernetes.io/service-account-token" => {
            let annotation = "kubernetes.io/service-account.name";
            let annotations = member(member(obj, "metadata"), "annotations");
            if text(annotations, annotation).is_empty() {
                causes.required(&keyed("metadata.annotations", annotation), "");
            }
        }
        _ => {}
    }
}

fn is_immutable(obj: &Value) -> bool {
    obj.get("immutable").and_then(Value::as_bool) == Some(true)
}

pub(crate) fn validate_secret_update(old: &Value, new: &Value, causes: &mut Causes) {
    validate_unchanged(present(old, "type"), present(new, "type"), "type", causes);
    validate_frozen_data(old, new, &["data"], causes);
}

pub(crate) fn validate_config_map_update(old: &Value, new: &Value, causes: &mut Causes) {
    validate_frozen_data(old, new, &["data", "binaryData"], causes);
}

/// Once `immutable` is true, neither it nor the data may change.
fn validate_frozen_data(old: &Value, new: &Value, keys: &[&str], causes: &mut Causes) {
    if !is_immutable(old) {
        return;
    }
    if !is_immutable(new) {
        causes.forbidden("immutable", IMMUTABLE_WHEN_SET);
    }
    for key in keys {
        if !same(old.get(*key), new.get(*key)) {
            causes.forbidden(key, IMMUTABLE_WHEN_SET);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Autoscaling and discovery.

pub(crate) fn validate_horizontal_pod_autoscaler(obj: &Value, causes: &mut Causes) {
    let spec = member(obj, "spec");
    let min = int(spec, "minReplicas");
    if let Some(min) = min.filter(|m| *m < 1) {
        causes.invalid("spec.minReplicas", &min.to_string(), "must be greater than or equal to 1");
    }
    let max = int(spec, "maxReplicas").unwrap_or(0);
    if max < 1 {
        causes.invalid("spec.maxReplicas", &max.to_string(), "must be greater than 0");
    }
    if min.is_some_and(|min| max < min) {
        causes.invalid("spec.maxReplicas", &max.to_string(), "must be greater than or equal to `minReplicas`");
    }
    let target = member(spec, "scaleTargetRef");
    for key in ["kind", "name"] {
        let path = child("spec.scaleTargetRef", key);
        let value = text(target, key);
        if value.is_empty() {
            causes.required(&path, "");
        } else {
            for msg in path_segment_name(value) {
                causes.invalid(&path, &go_quote(value), &msg);
            }
        }
    }
}

pub(crate) fn validate_endpoint_slice(obj: &Value, causes: &mut Causes) {
    let address_type = member(obj, "addressType");
    if !matches!(address_type.as_str(), Some("IPv4" | "IPv6" | "FQDN")) {
        let shown = if address_type.is_null() { go_quote("") } else { show(address_type) };
        causes.not_supported("addressType", &shown, &["FQDN", "IPv4", "IPv6"]);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Policy, scheduling and networking kinds.

const LIMIT_TYPES: [&str; 3] = ["Container", "PersistentVolumeClaim", "Pod"];

/// The quantity `limit[key][resource]`, parsed, with its text.
fn limit_quantity<'a>(limit: &'a Value, key: &str, resource: &str) -> Option<(&'a str, f64)> {
    let text = member(member(limit, key), resource).as_str()?;
    parse_quantity(text).map(|value| (text, value))
}

/// Each limit has a known type, parsable quantities, and bounds in order: min ≤ defaultRequest ≤ default ≤ max.
pub(crate) fn validate_limit_range(obj: &Value, causes: &mut Causes) {
    for (i, limit) in items(member(obj, "spec"), "limits").iter().enumerate() {
        let path = index("spec.limits", i);
        let kind = text(limit, "type");
        if !LIMIT_TYPES.contains(&kind) {
            causes.not_supported(&child(&path, "type"), &go_quote(kind), &LIMIT_TYPES);
        }
        if kind == "Pod" {
            for key in ["default", "defaultRequest"] {
                if present(limit, key).is_some() {
                    causes.forbidden(&child(&path, key), "may not be specified when `type` is 'Pod'");
                }
            }
        }
        let mut resources = BTreeSet::new();
        for key in ["min", "max", "default", "defaultRequest", "maxLimitRequestRatio"] {
            for (resource, quantity) in sorted_entries(limit.get(key)) {
                let q = text_of(quantity);
                if parse_quantity(q).is_some_and(|v| v < 0.0) {
                    causes.invalid(&keyed(&child(&path, key), resource), &go_quote(q), NEGATIVE);
                }
                resources.insert(resource.clone());
            }
        }
        for resource in &resources {
            let at = |key: &str| limit_quantity(limit, key, resource);
            let (min, max, default, request) = (at("min"), at("max"), at("default"), at("defaultRequest"));
            let mut order = |low: Option<(&str, f64)>, high: Option<(&str, f64)>, key: &str, what: &str| {
                if let (Some((low_text, low)), Some((high_text, high))) = (low, high) {
                    if low > high {
                        let message = format!("{what} {low_text} is greater than {high_text}");
                        causes.invalid(&keyed(&child(&path, key), resource), &go_quote(low_text), &message);
                    }
                }
            };
            order(min, max, "min", "min value");
            order(default, max, "default", "default value");
            order(min, default, "min", "min value");
            order(request, default, "defaultRequest", "default request value");
            order(min, request, "min", "min value");
            order(request, max, "defaultRequest", "default request value");
        }
    }
}

const QUOTA_SCOPES: [&str; 6] =
    ["BestEffort", "CrossNamespacePodAffinity", "NotBestEffort", "NotTerminating", "PriorityClass", "Terminating"];

pub(crate) fn validate_resource_quota(obj: &Value, causes: &mut Causes) {
    let spec = member(obj, "spec");
    for (resource, quantity) in sorted_entries(spec.get("hard")) {
        let path = keyed("spec.hard", resource);
        for msg in qualified_name(resource) {
            causes.invalid(&path, &go_quote(resource), &msg);
        }
        let q = text_of(quantity);
        if parse_quantity(q).is_some_and(|v| v < 0.0) {
            causes.invalid(&path, &go_quote(q), NEGATIVE);
        }
    }
    for (i, scope) in items(spec, "scopes").iter().enumerate() {
        let scope = scope.as_str().unwrap_or("");
        if !QUOTA_SCOPES.contains(&scope) {
            causes.not_supported(&index("spec.scopes", i), &go_quote(scope), &QUOTA_SCOPES);
        }
    }
}

/// The priority above which only the system classes may go.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;

/// The classes every cluster has, with their values.
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i64); 2] =
    [("system-node-critical", 2_000_001_000), ("system-cluster-critical", 2_000_000_000)];

pub(crate) fn validate_priority_class(obj: &Value, causes: &mut Causes) {
    let name = text(member(obj, "metadata"), "name");
    let value = int(obj, "value").unwrap_or(0);
    match SYSTEM_PRIORITY_CLASSES.iter().find(|(system, _)| *system == name) {
        Some((_, system_value)) if value != *system_value => causes.forbidden(
            "metadata.name",
            &format!("{name} is a system priority class and must have value {system_value}"),
        ),
        Some(_) => {}
        None if name.starts_with("system-") => {
            causes.forbidden("metadata.name", "priority class names with 'system-' prefix are reserved")
        }
        None if value > HIGHEST_USER_DEFINABLE_PRIORITY => causes.forbidden(
            "value",
            &format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"),
        ),
        None => {}
    }
    let policy = text(obj, "preemptionPolicy");
    if !matches!(policy, "" | "Never" | "PreemptLowerPriority") {
        causes.not_supported("preemptionPolicy", &go_quote(policy), &["Never", "PreemptLowerPriority"]);
    }
}

pub(crate) fn validate_priority_class_update(old: &Value, new: &Value, causes: &mut Causes) {
    if old.get("value") != new.get("value") {
        causes.forbidden("value", "may not be changed in an update.");
    }
    validate_unchanged(old.get("preemptionPolicy"), new.get("preemptionPolicy"), "preemptionPolicy", causes);
}

const PATH_TYPES: [&str; 3] = ["Exact", "ImplementationSpecific", "Prefix"];

pub(crate) fn validate_ingress(obj: &Value, causes: &mut Causes) {
    let spec = member(obj, "spec");
    let backend = present(spec, "defaultBackend");
    if let Some(backend) = backend {
        validate_ingress_backend(backend, "spec.defaultBackend", causes);
    }
    let rules = items(spec, "rules");
    if backend.is_none() && rules.is_empty() {
        causes.invalid("spec", &show(spec), "either `defaultBackend` or `rules` must be specified");
    }
    for (i, rule) in rules.iter().enumerate() {
        let path = index("spec.rules", i);
        let host = text(rule, "host");
        if !host.is_empty() {
            for msg in dns1123_subdomain(host.strip_prefix("*.").unwrap_or(host)) {
                causes.invalid(&child(&path, "host"), &go_quote(host), &msg);
            }
        }
        let Some(http) = present(rule, "http") else { continue };
        let paths_path = child(&child(&path, "http"), "paths");
        let paths = items(http, "paths");
        if paths.is_empty() {
            causes.required(&paths_path, "");
        }
        for (j, entry) in paths.iter().enumerate() {
            let entry_path = index(&paths_path, j);
            let path_type = text(entry, "pathType");
            let url_path = text(entry, "path");
            if path_type.is_empty() {
                causes.required(&child(&entry_path, "pathType"), "pathType must be specified");
            } else if !PATH_TYPES.contains(&path_type) {
                causes.not_supported(&child(&entry_path, "pathType"), &go_quote(path_type), &PATH_TYPES);
            } else if path_type != "ImplementationSpecific" && !url_path.starts_with('/') {
                causes.invalid(&child(&entry_path, "path"), &go_quote(url_path), "must be an absolute path");
            }
            validate_ingress_backend(member(entry, "backend"), &child(&entry_path, "backend"), causes);
        }
    }
    for (i, tls) in items(spec, "tls").iter().enumerate() {
        for (j, host) in items(tls, "hosts").iter().enumerate() {
            let host = host.as_str().unwrap_or("");
            for msg in dns1123_subdomain(host.strip_prefix("*.").unwrap_or(host)) {
                causes.invalid(&index(&child(&index("spec.tls", i), "hosts"), j), &go_quote(host), &msg);
            }
        }
    }
}

fn validate_ingress_backend(backend: &Value, path: &str, causes: &mut Causes) {
    match (present(backend, "service"), present(backend, "resource")) {
        (Some(_), Some(_)) => causes.invalid(path, &show(backend), "cannot set both resource and service backends"),
        (None, None) => causes.invalid(path, &show(backend), "one backend type must be specified"),
        (Some(service), None) => {
            let service_path = child(path, "service");
            let name = text(service, "name");
            if name.is_empty() {
                causes.required(&child(&service_path, "name"), "");
            } else {
                for msg in dns1035_label(name) {
                    causes.invalid(&child(&service_path, "name"), &go_quote(name), &msg);
                }
            }
            let port = member(service, "port");
            let port_path = child(&service_path, "port");
            match (text(port, "name"), int(port, "number").unwrap_or(0)) {
                ("", 0) => causes.invalid(&port_path, &show(port), "port name or number is required"),
                (name, 0) => {
                    for msg in port_name(name) {
                        causes.invalid(&child(&port_path, "name"), &go_quote(name), &msg);
                    }
                }
                ("", number) if !is_port_number(number) => {
                    causes.invalid(&child(&port_path, "number"), &number.to_string(), PORT_RANGE)
                }
                ("", _) => {}
                _ => causes.invalid(&port_path, &show(port), "cannot set both port name & port number"),
            }
        }
        (None, Some(resource)) => {
            for key in ["kind", "name"] {
                if text(resource, key).is_empty() {
                    causes.required(&child(&child(path, "resource"), key), "");
                }
            }
        }
    }
}

pub(crate) fn validate_ingress_class(obj: &Value, causes: &mut Causes) {
    let controller = text(member(obj, "spec"), "controller");
    if controller.is_empty() {
        causes.required("spec.controller", "");
    } else if controller.len() > 250 {
        causes.too_long("spec.controller", 250);
    }
}

pub(crate) fn validate_ingress_class_update(old: &Value, new: &Value, causes: &mut Causes) {
    validate_unchanged(
        member(old, "spec").get("controller"),
        member(new, "spec").get("controller"),
        "spec.controller",
        causes,
    );
}

// ---------------------------------------------------------------------------------------------------------
// RBAC.

/// A Role's or ClusterRole's rules: each names verbs, and resources (with API groups) or, cluster-wide only,
/// non-resource URLs.
fn validate_rules(obj: &Value, namespaced: bool, causes: &mut Causes) {
    for (i, rule) in items(obj, "rules").iter().enumerate() {
        let path = index("rules", i);
        if items(rule, "verbs").is_empty() {
            causes.required(&child(&path, "verbs"), "verbs must contain at least one value");
        }
        let urls = items(rule, "nonResourceURLs");
        if !urls.is_empty() {
            if namespaced {
                causes.invalid(
                    &child(&path, "nonResourceURLs"),
                    &show(member(rule, "nonResourceURLs")),
                    "namespaced rules cannot apply to non-resource URLs",
                );
            }
            if !items(rule, "resources").is_empty() || !items(rule, "apiGroups").is_empty() {
                causes.invalid(
                    &child(&path, "nonResourceURLs"),
                    &show(member(rule, "nonResourceURLs")),
                    "rules cannot apply to both regular resources and non-resource URLs",
                );
            }
            continue;
        }
        if items(rule, "apiGroups").is_empty() {
            causes.required(&child(&path, "apiGroups"), "resource rules must supply at least one api group");
        }
        if items(rule, "resources").is_empty() {
            causes.required(&child(&path, "resources"), "resource rules must supply at least one resource");
        }
    }
}

pub(crate) fn validate_role(obj: &Value, causes: &mut Causes) {
    validate_rules(obj, true, causes);
}

pub(crate) fn validate_cluster_role(obj: &Value, causes: &mut Causes) {
    validate_rules(obj, false, causes);
}

/// A binding's role reference and subjects; a RoleBinding may name a Role or a ClusterRole, a
/// ClusterRoleBinding only a ClusterRole.
fn validate_binding(obj: &Value, namespaced: bool, causes: &mut Causes) {
    let role = member(obj, "roleRef");
    let kinds: &[&str] = if namespaced { &["Role", "ClusterRole"] } else { &["ClusterRole"] };
    match text(role, "kind") {
        "" => causes.required("roleRef.kind", ""),
        kind if !kinds.contains(&kind) => causes.not_supported("roleRef.kind", &go_quote(kind), kinds),
        _ => {}
    }
    match text(role, "apiGroup") {
        "rbac.authorization.k8s.io" => {}
        group => causes.not_supported("roleRef.apiGroup", &go_quote(group), &["rbac.authorization.k8s.io"]),
    }
    if text(role, "name").is_empty() {
        causes.required("roleRef.name", "");
    }
    for (i, subject) in items(obj, "subjects").iter().enumerate() {
        let path = index("subjects", i);
        if text(subject, "name").is_empty() {
            causes.required(&child(&path, "name"), "");
        }
        match text(subject, "kind") {
            "ServiceAccount" => {
                if !namespaced && text(subject, "namespace").is_empty() {
                    causes.required(&child(&path, "namespace"), "");
                }
            }
            "User" | "Group" => {}
            kind => causes.not_supported(&child(&path, "kind"), &go_quote(kind), &["ServiceAccount", "User", "Group"]),
        }
    }
}

pub(crate) fn validate_role_binding(obj: &Value, causes: &mut Causes) {
    validate_binding(obj, true, causes);
}

pub(crate) fn validate_cluster_role_binding(obj: &Value, causes: &mut Causes) {
    validate_binding(obj, false, causes);
}

/// A binding's role may not change: delete and recreate it.
pub(crate) fn validate_binding_update(old: &Value, new: &Value, causes: &mut Causes) {
    if !same(old.get("roleRef"), new.get("roleRef")) {
        causes.invalid("roleRef", &show_opt(new.get("roleRef")), "cannot change roleRef");
    }
}

pub(crate) fn validate_network_policy(obj: &Value, causes: &mut Causes) {
    let spec = member(obj, "spec");
    validate_label_selector(member(spec, "podSelector"), "spec.podSelector", causes);
    for direction in ["ingress", "egress"] {
        for (i, rule) in items(spec, direction).iter().enumerate() {
            let path = index(&child("spec", direction), i);
            for (j, port) in items(rule, "ports").iter().enumerate() {
                validate_protocol(port, &index(&child(&path, "ports"), j), causes);
            }
        }
    }
    for (i, policy_type) in items(spec, "policyTypes").iter().enumerate() {
        let policy_type = policy_type.as_str().unwrap_or("");
        if !matches!(policy_type, "Ingress" | "Egress") {
            causes.not_supported(&index("spec.policyTypes", i), &go_quote(policy_type), &["Egress", "Ingress"]);
        }
    }
}

/// The fields an `events.k8s.io/v1` Event must carry when it is created through that API.
pub(crate) fn validate_events_event(obj: &Value, causes: &mut Causes) {
    const TEXT_MAX: usize = 128;
    const NOTE_MAX: usize = 1024;
    if present(obj, "eventTime").is_none() {
        causes.required("eventTime", "");
    }
    for key in ["reportingController", "reportingInstance", "action", "reason"] {
        let value = text(obj, key);
        if value.is_empty() {
            causes.required(key, "");
        } else if value.len() > TEXT_MAX && key != "reportingController" {
            causes.too_long(key, TEXT_MAX);
        }
    }
    let controller = text(obj, "reportingController");
    if !controller.is_empty() {
        for msg in qualified_name(controller) {
            causes.invalid("reportingController", &go_quote(controller), &msg);
        }
    }
    let event_type = text(obj, "type");
    if !matches!(event_type, "Normal" | "Warning") {
        causes.not_supported("type", &go_quote(event_type), &["Normal", "Warning"]);
    }
    if text(obj, "note").len() > NOTE_MAX {
        causes.too_long("note", NOTE_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apis::catalog::{served, RESOURCES};
    use serde_json::json;

    /// Applies an RFC 7386 merge patch, so each case states only what differs from a valid object.
    fn merged(mut base: Value, patch: Value) -> Value {
        merge_into(&mut base, patch);
        base
    }

    fn merge_into(target: &mut Value, patch: Value) {
        let Value::Object(patch) = patch else {
            *target = patch;
            return;
        };
        if !target.is_object() {
            *target = json!({});
        }
        if let Some(map) = target.as_object_mut() {
            for (key, value) in patch {
                if value.is_null() {
                    map.remove(&key);
                } else {
                    merge_into(map.entry(key).or_insert(Value::Null), value);
                }
            }
        }
    }

    fn pod() -> Value {
        json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default","labels":{"app":"web"}},
            "spec":{"containers":[{"name":"app","image":"nginx:1.27","ports":[{"containerPort":80,"protocol":"TCP"}]}],
                "restartPolicy":"Always","dnsPolicy":"ClusterFirst","terminationGracePeriodSeconds":30}})
    }

    fn pod_spec_patch(spec: Value) -> Value {
        merged(pod(), json!({ "spec": spec }))
    }

    fn fields(causes: &[Cause]) -> Vec<&str> {
        causes.iter().map(|c| c.field.as_str()).collect()
    }

    #[test]
    fn quantities_parse_as_upstream_reads_them() {
        for (text, value) in [
            ("1", 1.0),
            ("250m", 0.25),
            ("0.5", 0.5),
            (".5", 0.5),
            ("1.", 1.0),
            ("+2", 2.0),
            ("-1", -1.0),
            ("1Ki", 1024.0),
            ("1.5Gi", 1.5 * 1024.0 * 1024.0 * 1024.0),
            ("1e3", 1000.0),
            ("1E-3", 0.001),
            ("2M", 2e6),
            ("1E", 1e18),
        ] {
            assert_eq!(parse_quantity(text), Some(value), "{text}");
        }
        assert_eq!(parse_quantity("100m"), parse_quantity("0.1"));
        assert_eq!(parse_quantity("1024Mi"), parse_quantity("1Gi"));
        for bad in ["", "garbage", "1.2.3", ".", "1x", "1Kb", "1e", "1e+", "m", "--1", "1 "] {
            assert_eq!(parse_quantity(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn unparsable_quantities_are_found_anywhere() {
        let template = json!({"spec": {"template": {"spec": {"containers": [
            {"resources": {"limits": {"cpu": "1"}, "requests": {"memory": "lots"}}}]}}}});
        assert_eq!(unparsable_quantity(&template).as_deref(), Some("lots"));
        assert_eq!(unparsable_quantity(&pod()), None);
    }

    #[test]
    fn requests_and_limits_are_nonnegative_and_ordered() {
        let obj = pod_spec_patch(json!({"containers": [{"name": "app", "image": "nginx",
            "resources": {"limits": {"cpu": "-1", "memory": "1Gi"}, "requests": {"memory": "2Gi", "cpu": "-2"}}}]}));
        let causes = validate_create(served("", "Pod"), &obj);
        assert_eq!(
            fields(&causes),
            [
                "spec.containers[0].resources.limits[cpu]",
                "spec.containers[0].resources.requests[cpu]",
                "spec.containers[0].resources.requests"
            ]
        );
        assert_eq!(causes[0].message, "Invalid value: \"-1\": must be greater than or equal to 0");
        assert_eq!(causes[2].message, "Invalid value: \"2Gi\": must be less than or equal to memory limit of 1Gi");
    }

    #[test]
    fn node_names_env_sources_and_affinity_operators() {
        let obj = pod_spec_patch(json!({"nodeName": "../../etc", "containers": [{"name": "app", "image": "nginx",
            "env": [{"name": "A", "valueFrom": {}}, {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s"}}},
                {"name": "C", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "k", "operator": "Bogus"}, {"key": "k", "operator": "Lt", "values": []},
                    {"key": "k", "operator": "Exists"}]}]}},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1,
                    "podAffinityTerm": {"topologyKey": "", "labelSelector": {"matchExpressions": [
                        {"key": "k", "operator": "Nope"}]}}}]}}}));
        let causes = validate_create(served("", "Pod"), &obj);
        let node = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]";
        let term = "spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm";
        for field in [
            "spec.containers[0].env[0].valueFrom".to_string(),
            "spec.containers[0].env[1].valueFrom.secretKeyRef.key".to_string(),
            "spec.containers[0].env[2].valueFrom".to_string(),
            "spec.nodeName".to_string(),
            format!("{node}.matchExpressions[0].operator"),
            format!("{node}.matchExpressions[1].values"),
            format!("{term}.labelSelector.matchExpressions[0].operator"),
            format!("{term}.topologyKey"),
        ] {
            assert!(fields(&causes).contains(&field.as_str()), "no cause at {field}: {causes:?}");
        }
        assert!(!fields(&causes).iter().any(|f| f.contains("matchExpressions[2]")), "{causes:?}");
    }

    #[test]
    fn cluster_ips_hold_one_ip_per_family_and_agree_with_cluster_ip() {
        let service = |spec: Value| {
            let mut base = json!({"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]});
            merge_into(&mut base, spec);
            let mut causes = Causes::default();
            validate_cluster_ips(&base, &mut causes);
            causes.0.into_iter().map(|c| c.message).collect::<Vec<_>>()
        };
        assert!(service(json!({"clusterIPs": ["10.0.0.1", "fd00::1"], "clusterIP": "10.0.0.1"})).is_empty());
        let three = service(json!({"clusterIPs": ["10.0.0.1", "fd00::1", "10.0.0.2"]}));
        assert!(three.iter().any(|m| m.ends_with("may only hold up to 2 values")), "{three:?}");
        let same = service(json!({"clusterIPs": ["10.0.0.1", "10.0.0.2"]}));
        assert!(same.iter().any(|m| m.ends_with("may specify no more than one IP for each IP family")), "{same:?}");
        let apart = service(json!({"clusterIPs": ["10.0.0.1"], "clusterIP": "10.0.0.2"}));
        assert!(apart.iter().any(|m| m.ends_with("first value must match `clusterIP`")), "{apart:?}");
    }

    fn deployment() -> Value {
        json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},
            "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},
                "template":{"metadata":{"labels":{"app":"web"}},
                    "spec":{"containers":[{"name":"app","image":"nginx"}],"restartPolicy":"Always"}},
                "strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":"25%"}},
                "revisionHistoryLimit":10,"progressDeadlineSeconds":600}})
    }

    fn workload(kind: &str) -> Value {
        let mut obj = deployment();
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("strategy");
            spec.remove("progressDeadlineSeconds");
            if kind == "DaemonSet" {
                spec.remove("replicas");
            }
        }
        obj["kind"] = json!(kind);
        obj
    }

    fn service() -> Value {
        json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default"},
            "spec":{"type":"ClusterIP","selector":{"app":"web"},
                "ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":8080}]}})
    }

    fn job() -> Value {
        json!({"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"pi","namespace":"default"},
            "spec":{"parallelism":1,"completions":1,"backoffLimit":6,"completionMode":"NonIndexed",
                "template":{"spec":{"containers":[{"name":"pi","image":"perl"}],"restartPolicy":"Never"}}}})
    }

    fn cron_job() -> Value {
        json!({"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"tick","namespace":"default"},
            "spec":{"schedule":"*/5 * * * *","concurrencyPolicy":"Allow",
                "jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"tick","image":"busybox"}],
                    "restartPolicy":"OnFailure"}}}}}})
    }

    fn config_map() -> Value {
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings","namespace":"default"},
            "data":{"app.properties":"a=b"},"binaryData":{"blob":"AAEC"}})
    }

    fn secret() -> Value {
        json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"creds","namespace":"default"},
            "type":"Opaque","data":{"password":"c2VjcmV0"}})
    }

    fn hpa() -> Value {
        json!({"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler",
            "metadata":{"name":"web","namespace":"default"},
            "spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},
                "minReplicas":1,"maxReplicas":5}})
    }

    fn endpoint_slice() -> Value {
        json!({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
            "metadata":{"name":"web-abc","namespace":"default"},"addressType":"IPv4","endpoints":[]})
    }

    type Expected = Option<(&'static str, &'static str, &'static str)>;

    fn check(label: &str, causes: &[Cause], expected: Expected) {
        match expected {
            None => assert!(causes.is_empty(), "{label}: expected no causes, got {causes:#?}"),
            Some((reason, field, message)) => {
                let want = Cause { reason, field: field.to_owned(), message: message.to_owned() };
                assert!(causes.contains(&want), "{label}: expected {want:#?}\ngot {causes:#?}");
            }
        }
    }

    const DNS_SUBDOMAIN_ERROR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const DNS_LABEL_ERROR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

    #[test]
    fn message_forms_match_upstream() {
        assert!(DNS_SUBDOMAIN_ERROR.ends_with(&dns1123_subdomain("Nginx_1")[0]));
        assert_eq!(dns1123_label("Web")[0], DNS_LABEL_ERROR);
        assert_eq!(go_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(
            show_string_map(Some(&json!({"tier":"web","app":"other"}))),
            "map[string]string{\"app\":\"other\", \"tier\":\"web\"}"
        );
        assert_eq!(
            show_selector(&json!({})),
            "v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"
        );
    }

    #[test]
    fn metadata_rules() {
        let long_name = "a".repeat(254);
        let long_label = "v".repeat(64);
        let big_annotation = "x".repeat(TOTAL_ANNOTATION_SIZE);
        let cases: Vec<(&str, &str, &str, Value, Expected)> = vec![
            ("valid pod", "", "Pod", pod(), None),
            (
                "name required",
                "",
                "Pod",
                merged(pod(), json!({"metadata":{"name":null}})),
                Some(("FieldValueRequired", "metadata.name", "Required value: name or generateName is required")),
            ),
            ("generateName stands in for name", "", "Pod", merged(pod(), json!({"metadata":{"name":null,"generateName":"web-"}})), None),
            (
                "name must be a subdomain",
                "",
                "ConfigMap",
                merged(config_map(), json!({"metadata":{"name":"Nginx_1"}})),
                Some((
                    "FieldValueInvalid",
                    "metadata.name",
                    "Invalid value: \"Nginx_1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                )),
            ),
            ("dotted name is a subdomain", "", "ConfigMap", merged(config_map(), json!({"metadata":{"name":"a.b-c"}})), None),
            (
                "name at most 253",
                "",
                "ConfigMap",
                merged(config_map(), json!({"metadata":{"name":long_name}})),
                Some((
                    "FieldValueInvalid",
                    "metadata.name",
                    Box::leak(format!("Invalid value: \"{long_name}\": must be no more than 253 characters").into_boxed_str()),
                )),
            ),
            ("namespace name is a label", "", "Namespace", json!({"metadata":{"name":"team-a"}}), None),
            (
                "namespace name may not contain dots",
                "",
                "Namespace",
                json!({"metadata":{"name":"team.a"}}),
                Some(("FieldValueInvalid", "metadata.name", Box::leak(format!("Invalid value: \"team.a\": {DNS_LABEL_ERROR}").into_boxed_str()))),
            ),
            (
                "service name starts with a letter",
                "",
                "Service",
                merged(service(), json!({"metadata":{"name":"1web"}})),
                Some((
                    "FieldValueInvalid",
                    "metadata.name",
                    "Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
                )),
            ),
            ("prefixed label key", "", "Pod", merged(pod(), json!({"metadata":{"labels":{"example.com/tier":"web_1","empty":""}}})), None),
            (
                "label key name part",
                "",
                "Pod",
                merged(pod(), json!({"metadata":{"labels":{"-bad":"x"}}})),
                Some((
                    "FieldValueInvalid",
                    "metadata.labels",
                    "Invalid value: \"-bad\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                )),
            ),
            (
                "label key prefix",
                "",
                "Pod",
                merged(pod(), json!({"metadata":{"labels":{"Example.com/x":"y"}}})),
                Some((
                    "FieldValueInvalid",
                    "metadata.labels",
                    Box::leak(format!("Invalid value: \"Example.com/x\": prefix part {DNS_SUBDOMAIN_ERROR}").into_boxed_str()),
                )),
            ),
            (
                "label value length",
                "",
                "Pod",
                merged(pod(), json!({"metadata":{"labels":{"app":long_label}}})),
                Some((
                    "FieldValueInvalid",
                    "metadata.labels",
                    Box::leak(format!("Invalid value: \"{long_label}\": must be no more than 63 characters").into_boxed_str()),
                )),
            ),
            ("upper-case annotation key", "", "Pod", merged(pod(), json!({"metadata":{"annotations":{"Example.com/Note":"anything at all"}}})), None),
            (
                "annotation key with two slashes",
                "",
                "Pod",
                merged(pod(), json!({"metadata":{"annotations":{"a/b/c":"x"}}})),
                Some((
                    "FieldValueInvalid",
                    "metadata.annotations",
                    "Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                )),
            ),
            (
                "annotations total size",
                "",
                "Pod",
                merged(pod(), json!({"metadata":{"annotations":{"big":big_annotation}}})),
                Some(("FieldValueTooLong", "metadata.annotations", "Too long: may not be more than 262144 bytes")),
            ),
        ];
        for (label, group, kind, obj, expected) in cases {
            check(label, &validate_create(served(group, kind), &obj), expected);
        }
    }

    #[test]
    fn metadata_update_rules() {
        let cases: Vec<(&str, Value, Value, Expected)> = vec![
            ("labels may change", pod(), merged(pod(), json!({"metadata":{"labels":{"app":"v2"}}})), None),
            (
                "name is immutable",
                pod(),
                merged(pod(), json!({"metadata":{"name":"other"}})),
                Some(("FieldValueInvalid", "metadata.name", "Invalid value: \"other\": field is immutable")),
            ),
            (
                "namespace is immutable",
                pod(),
                merged(pod(), json!({"metadata":{"namespace":"other"}})),
                Some(("FieldValueInvalid", "metadata.namespace", "Invalid value: \"other\": field is immutable")),
            ),
            (
                "uid is immutable",
                merged(pod(), json!({"metadata":{"uid":"1"}})),
                merged(pod(), json!({"metadata":{"uid":"2"}})),
                Some(("FieldValueInvalid", "metadata.uid", "Invalid value: \"2\": field is immutable")),
            ),
        ];
        for (label, old, new, expected) in cases {
            check(label, &validate_update(served("", "Pod"), &old, &new), expected);
        }
    }

    #[test]
    fn pod_spec_rules() {
        let cases: Vec<(&str, Value, Expected)> = vec![
            (
                "no containers",
                pod_spec_patch(json!({"containers":[]})),
                Some(("FieldValueRequired", "spec.containers", "Required value")),
            ),
            (
                "container name is a label",
                pod_spec_patch(json!({"containers":[{"name":"App","image":"nginx"}]})),
                Some((
                    "FieldValueInvalid",
                    "spec.containers[0].name",
                    Box::leak(format!("Invalid value: \"App\": {DNS_LABEL_ERROR}").into_boxed_str()),
                )),
            ),
            (
                "container names unique across init containers",
                pod_spec_patch(json!({"initContainers":[{"name":"app","image":"busybox"}]})),
                Some(("FieldValueDuplicate", "spec.initContainers[0].name", "Duplicate value: \"app\"")),
            ),
            (
                "distinct init container",
                pod_spec_patch(json!({"initContainers":[{"name":"setup","image":"busybox"}]})),
                None,
            ),
            (
                "image required",
                pod_spec_patch(json!({"containers":[{"name":"app"}]})),
                Some(("FieldValueRequired", "spec.containers[0].image", "Required value")),
            ),
            (
                "container port range",
                pod_spec_patch(
                    json!({"containers":[{"name":"app","image":"nginx","ports":[{"containerPort":70000,"protocol":"TCP"}]}]}),
                ),
                Some((
                    "FieldValueInvalid",
                    "spec.containers[0].ports[0].containerPort",
                    "Invalid value: 70000: must be between 1 and 65535, inclusive",
                )),
            ),
            (
                "host port range",
                pod_spec_patch(
                    json!({"containers":[{"name":"app","image":"nginx","ports":[{"containerPort":80,"hostPort":-1,"protocol":"TCP"}]}]}),
                ),
                Some((
                    "FieldValueInvalid",
                    "spec.containers[0].ports[0].hostPort",
                    "Invalid value: -1: must be between 1 and 65535, inclusive",
                )),
            ),
            (
                "host port set",
                pod_spec_patch(
                    json!({"containers":[{"name":"app","image":"nginx","ports":[{"containerPort":80,"hostPort":8080,"protocol":"UDP"}]}]}),
                ),
                None,
            ),
            (
                "port protocol",
                pod_spec_patch(
                    json!({"containers":[{"name":"app","image":"nginx","ports":[{"containerPort":80,"protocol":"HTTP"}]}]}),
                ),
                Some((
                    "FieldValueNotSupported",
                    "spec.containers[0].ports[0].protocol",
                    "Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                )),
            ),
            (
                "port names unique",
                pod_spec_patch(json!({"containers":[{"name":"app","image":"nginx","ports":[
                    {"name":"web","containerPort":80,"protocol":"TCP"},{"name":"web","containerPort":81,"protocol":"TCP"}]}]})),
                Some(("FieldValueDuplicate", "spec.containers[0].ports[1].name", "Duplicate value: \"web\"")),
            ),
            (
                "port name syntax",
                pod_spec_patch(
                    json!({"containers":[{"name":"app","image":"nginx","ports":[{"name":"8080","containerPort":80,"protocol":"TCP"}]}]}),
                ),
                Some((
                    "FieldValueInvalid",
                    "spec.containers[0].ports[0].name",
                    "Invalid value: \"8080\": must contain at least one letter (a-z)",
                )),
            ),
            ("restart policy OnFailure", pod_spec_patch(json!({"restartPolicy":"OnFailure"})), None),
            (
                "termination message policy",
                pod_spec_patch(
                    json!({"containers":[{"name":"app","image":"nginx","terminationMessagePolicy":"Stdout"}]}),
                ),
                Some((
                    "FieldValueNotSupported",
                    "spec.containers[0].terminationMessagePolicy",
                    "Unsupported value: \"Stdout\": supported values: \"File\", \"FallbackToLogsOnError\"",
                )),
            ),
            (
                "restart policy on a regular container",
                pod_spec_patch(json!({"containers":[{"name":"app","image":"nginx","restartPolicy":"Always"}]})),
                Some((
                    "FieldValueForbidden",
                    "spec.containers[0].restartPolicy",
                    "Forbidden: may not be set for non-init containers",
                )),
            ),
            (
                "sidecar init container",
                pod_spec_patch(json!({"initContainers":[{"name":"proxy","image":"envoy","restartPolicy":"Always"}]})),
                None,
            ),
            (
                "init container restart policy",
                pod_spec_patch(json!({"initContainers":[{"name":"proxy","image":"envoy","restartPolicy":"Never"}]})),
                Some((
                    "FieldValueNotSupported",
                    "spec.initContainers[0].restartPolicy",
                    "Unsupported value: \"Never\": supported values: \"Always\"",
                )),
            ),
            (
                "restart policy",
                pod_spec_patch(json!({"restartPolicy":"Sometimes"})),
                Some((
                    "FieldValueNotSupported",
                    "spec.restartPolicy",
                    "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
                )),
            ),
            (
                "volumes and mounts",
                pod_spec_patch(json!({"volumes":[{"name":"data","emptyDir":{}}],
                    "containers":[{"name":"app","image":"nginx","volumeMounts":[{"name":"data","mountPath":"/data"}]}]})),
                None,
            ),
            (
                "volume name is a label",
                pod_spec_patch(json!({"volumes":[{"name":"Data","emptyDir":{}}]})),
                Some((
                    "FieldValueInvalid",
                    "spec.volumes[0].name",
                    Box::leak(format!("Invalid value: \"Data\": {DNS_LABEL_ERROR}").into_boxed_str()),
                )),
            ),
            (
                "volume names unique",
                pod_spec_patch(json!({"volumes":[{"name":"data","emptyDir":{}},{"name":"data","emptyDir":{}}]})),
                Some(("FieldValueDuplicate", "spec.volumes[1].name", "Duplicate value: \"data\"")),
            ),
            (
                "volume needs a source",
                pod_spec_patch(json!({"volumes":[{"name":"data"}]})),
                Some(("FieldValueRequired", "spec.volumes[0]", "Required value: must specify a volume type")),
            ),
            (
                "mount refers to a volume",
                pod_spec_patch(
                    json!({"containers":[{"name":"app","image":"nginx","volumeMounts":[{"name":"x","mountPath":"/x"}]}]}),
                ),
                Some(("FieldValueNotFound", "spec.containers[0].volumeMounts[0].name", "Not found: \"x\"")),
            ),
            (
                "mount path required",
                pod_spec_patch(json!({"volumes":[{"name":"data","emptyDir":{}}],
                    "containers":[{"name":"app","image":"nginx","volumeMounts":[{"name":"data"}]}]})),
                Some(("FieldValueRequired", "spec.containers[0].volumeMounts[0].mountPath", "Required value")),
            ),
            ("zero grace period", pod_spec_patch(json!({"terminationGracePeriodSeconds":0})), None),
            (
                "negative grace period",
                pod_spec_patch(json!({"terminationGracePeriodSeconds":-1})),
                Some((
                    "FieldValueInvalid",
                    "spec.terminationGracePeriodSeconds",
                    "Invalid value: -1: must be greater than or equal to 0",
                )),
            ),
            (
                "toleration operator",
                pod_spec_patch(json!({"tolerations":[{"key":"k","operator":"Maybe"}]})),
                Some((
                    "FieldValueNotSupported",
                    "spec.tolerations[0].operator",
                    "Unsupported value: \"Maybe\": supported values: \"Equal\", \"Exists\"",
                )),
            ),
            (
                "toleration",
                pod_spec_patch(
                    json!({"tolerations":[{"key":"k","operator":"Exists","effect":"NoExecute","tolerationSeconds":5}]}),
                ),
                None,
            ),
            (
                "image pull policy",
                pod_spec_patch(json!({"containers":[{"name":"app","image":"nginx","imagePullPolicy":"Sometimes"}]})),
                Some((
                    "FieldValueNotSupported",
                    "spec.containers[0].imagePullPolicy",
                    "Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
                )),
            ),
        ];
        for (label, obj, expected) in cases {
            check(label, &validate_create(served("", "Pod"), &obj), expected);
        }
    }

    #[test]
    fn pod_spec_paths_inside_templates() {
        let d = merged(deployment(), json!({"spec":{"template":{"spec":{"containers":[{"name":"app","image":""}]}}}}));
        check(
            "deployment",
            &validate_create(served("apps", "Deployment"), &d),
            Some(("FieldValueRequired", "spec.template.spec.containers[0].image", "Required value")),
        );
        let c = merged(cron_job(), json!({"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[]}}}}}}));
        check(
            "cron job",
            &validate_create(served("batch", "CronJob"), &c),
            Some(("FieldValueRequired", "spec.jobTemplate.spec.template.spec.containers", "Required value")),
        );
    }

    #[test]
    fn workload_rules() {
        let cases: Vec<(&str, &str, Value, Expected)> = vec![
            ("valid deployment", "Deployment", deployment(), None),
            ("valid replica set", "ReplicaSet", workload("ReplicaSet"), None),
            ("valid stateful set", "StatefulSet", workload("StatefulSet"), None),
            ("valid daemon set", "DaemonSet", workload("DaemonSet"), None),
            (
                "selector required",
                "Deployment",
                merged(deployment(), json!({"spec":{"selector":null}})),
                Some(("FieldValueRequired", "spec.selector", "Required value")),
            ),
            (
                "empty selector",
                "Deployment",
                merged(deployment(), json!({"spec":{"selector":{"matchLabels":null}}})),
                Some((
                    "FieldValueInvalid",
                    "spec.selector",
                    "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
                )),
            ),
            (
                "selector must match template",
                "Deployment",
                merged(deployment(), json!({"spec":{"template":{"metadata":{"labels":{"app":"other"}}}}})),
                Some((
                    "FieldValueInvalid",
                    "spec.template.metadata.labels",
                    "Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`",
                )),
            ),
            (
                "selector expressions match",
                "ReplicaSet",
                merged(workload("ReplicaSet"), json!({"spec":{"selector":{"matchLabels":null,
                    "matchExpressions":[{"key":"app","operator":"In","values":["web","api"]}]}}})),
                None,
            ),
            (
                "stateful set selector must match",
                "StatefulSet",
                merged(workload("StatefulSet"), json!({"spec":{"selector":{"matchLabels":{"app":"db"}}}})),
                Some((
                    "FieldValueInvalid",
                    "spec.template.metadata.labels",
                    "Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
                )),
            ),
            (
                "replicas not negative",
                "ReplicaSet",
                merged(workload("ReplicaSet"), json!({"spec":{"replicas":-1}})),
                Some(("FieldValueInvalid", "spec.replicas", "Invalid value: -1: must be greater than or equal to 0")),
            ),
            ("zero replicas", "Deployment", merged(deployment(), json!({"spec":{"replicas":0}})), None),
            (
                "daemon set without selector",
                "DaemonSet",
                merged(workload("DaemonSet"), json!({"spec":{"selector":null}})),
                Some((
                    "FieldValueInvalid",
                    "spec.template.metadata.labels",
                    "Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
                )),
            ),
            (
                "empty daemon set selector",
                "DaemonSet",
                merged(workload("DaemonSet"), json!({"spec":{"selector":{"matchLabels":null}}})),
                Some((
                    "FieldValueInvalid",
                    "spec.selector",
                    "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for daemonset",
                )),
            ),
            (
                "template deadline",
                "Deployment",
                merged(deployment(), json!({"spec":{"template":{"spec":{"activeDeadlineSeconds":5}}}})),
                Some((
                    "FieldValueForbidden",
                    "spec.template.spec.activeDeadlineSeconds",
                    "Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported",
                )),
            ),

            (
                "template restarts always",
                "DaemonSet",
                merged(workload("DaemonSet"), json!({"spec":{"template":{"spec":{"restartPolicy":"Never"}}}})),
                Some((
                    "FieldValueNotSupported",
                    "spec.template.spec.restartPolicy",
                    "Unsupported value: \"Never\": supported values: \"Always\"",
                )),
            ),
            (
                "strategy type",
                "Deployment",
                merged(deployment(), json!({"spec":{"strategy":{"type":"BlueGreen","rollingUpdate":null}}})),
                Some((
                    "FieldValueNotSupported",
                    "spec.strategy.type",
                    "Unsupported value: \"BlueGreen\": supported values: \"Recreate\", \"RollingUpdate\"",
                )),
            ),
            ("recreate", "Deployment", merged(deployment(), json!({"spec":{"strategy":{"type":"Recreate","rollingUpdate":null}}})), None),
            (
                "rolling update with recreate",
                "Deployment",
                merged(deployment(), json!({"spec":{"strategy":{"type":"Recreate"}}})),
                Some((
                    "FieldValueForbidden",
                    "spec.strategy.rollingUpdate",
                    "Forbidden: may not be specified when strategy `type` is 'Recreate'",
                )),
            ),
            (
                "surge and unavailable both zero",
                "Deployment",
                merged(deployment(), json!({"spec":{"strategy":{"rollingUpdate":{"maxSurge":0,"maxUnavailable":"0%"}}}})),
                Some((
                    "FieldValueInvalid",
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    "Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"0%\"}: may not be 0 when `maxSurge` is 0",
                )),
            ),
            ("surge only", "Deployment", merged(deployment(), json!({"spec":{"strategy":{"rollingUpdate":{"maxSurge":1,"maxUnavailable":0}}}})), None),
            (
                "revision history limit",
                "Deployment",
                merged(deployment(), json!({"spec":{"revisionHistoryLimit":-1}})),
                Some(("FieldValueInvalid", "spec.revisionHistoryLimit", "Invalid value: -1: must be greater than or equal to 0")),
            ),
            (
                "progress deadline after min ready",
                "Deployment",
                merged(deployment(), json!({"spec":{"minReadySeconds":600}})),
                Some(("FieldValueInvalid", "spec.progressDeadlineSeconds", "Invalid value: 600: must be greater than minReadySeconds")),
            ),
            (
                "stateful set mounts may name claim templates",
                "StatefulSet",
                merged(workload("StatefulSet"), json!({"spec":{"volumeClaimTemplates":[{"metadata":{"name":"data"}}],
                    "template":{"spec":{"containers":[{"name":"app","image":"db","volumeMounts":[{"name":"data","mountPath":"/d"}]}]}}}})),
                None,
            ),
        ];
        for (label, kind, obj, expected) in cases {
            check(label, &validate_create(served("apps", kind), &obj), expected);
        }
    }

    #[test]
    fn workload_update_rules() {
        let moved = merged(
            deployment(),
            json!({"spec":{"selector":{"matchLabels":{"app":"v2"}},"template":{"metadata":{"labels":{"app":"v2"}}}}}),
        );
        check(
            "selector immutable",
            &validate_update(served("apps", "Deployment"), &deployment(), &moved),
            Some((
                "FieldValueInvalid",
                "spec.selector",
                "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"v2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable",
            )),
        );
        let scaled = merged(
            deployment(),
            json!({"spec":{"replicas":5,"template":{"spec":{"containers":[{"name":"app","image":"nginx:2"}]}}}}),
        );
        check("scale and new image", &validate_update(served("apps", "Deployment"), &deployment(), &scaled), None);
        let set = workload("StatefulSet");
        let renamed = merged(set.clone(), json!({"spec":{"serviceName":"other"}}));
        check(
            "stateful set service name",
            &validate_update(served("apps", "StatefulSet"), &set, &renamed),
            Some((
                "FieldValueForbidden",
                "spec",
                "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            )),
        );
        check(
            "stateful set scale",
            &validate_update(served("apps", "StatefulSet"), &set, &merged(set.clone(), json!({"spec":{"replicas":3}}))),
            None,
        );
    }

    #[test]
    fn pod_update_rules() {
        let forbidden = Box::leak(format!("Forbidden: {POD_UPDATE_FORBIDDEN}").into_boxed_str());
        let cases: Vec<(&str, Value, Value, Expected)> = vec![
            (
                "new image",
                pod(),
                pod_spec_patch(
                    json!({"containers":[{"name":"app","image":"nginx:2","ports":[{"containerPort":80,"protocol":"TCP"}]}]}),
                ),
                None,
            ),
            ("deadline set", pod(), pod_spec_patch(json!({"activeDeadlineSeconds":30})), None),
            ("toleration added", pod(), pod_spec_patch(json!({"tolerations":[{"key":"k","operator":"Exists"}]})), None),
            ("binding", pod(), pod_spec_patch(json!({"nodeName":"node-1"})), None),
            (
                "rebinding",
                pod_spec_patch(json!({"nodeName":"node-1"})),
                pod_spec_patch(json!({"nodeName":"node-2"})),
                Some(("FieldValueForbidden", "spec", forbidden)),
            ),
            (
                "restart policy change",
                pod(),
                pod_spec_patch(json!({"restartPolicy":"Never"})),
                Some(("FieldValueForbidden", "spec", forbidden)),
            ),
            (
                "toleration changed",
                pod_spec_patch(json!({"tolerations":[{"key":"k","operator":"Exists"}]})),
                pod_spec_patch(json!({"tolerations":[{"key":"j","operator":"Exists"}]})),
                Some((
                    "FieldValueForbidden",
                    "spec.tolerations",
                    "Forbidden: existing toleration can not be modified except its tolerationSeconds",
                )),
            ),
            (
                "container added",
                pod(),
                pod_spec_patch(
                    json!({"containers":[{"name":"app","image":"nginx"},{"name":"side","image":"busybox"}]}),
                ),
                Some((
                    "FieldValueForbidden",
                    "spec.containers",
                    "Forbidden: pod updates may not add or remove containers",
                )),
            ),
            (
                "deadline raised",
                pod_spec_patch(json!({"activeDeadlineSeconds":30})),
                pod_spec_patch(json!({"activeDeadlineSeconds":60})),
                Some((
                    "FieldValueInvalid",
                    "spec.activeDeadlineSeconds",
                    "Invalid value: 60: must be less than or equal to previous value",
                )),
            ),
        ];
        for (label, old, new, expected) in cases {
            check(label, &validate_update(served("", "Pod"), &old, &new), expected);
        }
    }

    #[test]
    fn service_rules() {
        let cases: Vec<(&str, Value, Expected)> = vec![
            ("valid service", service(), None),
            (
                "type",
                merged(service(), json!({"spec":{"type":"Internal"}})),
                Some((
                    "FieldValueNotSupported",
                    "spec.type",
                    "Unsupported value: \"Internal\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                )),
            ),
            ("ports required", merged(service(), json!({"spec":{"ports":[]}})), Some(("FieldValueRequired", "spec.ports", "Required value"))),
            ("headless without ports", merged(service(), json!({"spec":{"ports":[],"clusterIP":"None"}})), None),
            (
                "port range",
                merged(service(), json!({"spec":{"ports":[{"port":0,"protocol":"TCP"}]}})),
                Some(("FieldValueInvalid", "spec.ports[0].port", "Invalid value: 0: must be between 1 and 65535, inclusive")),
            ),
            (
                "protocol",
                merged(service(), json!({"spec":{"ports":[{"port":80,"protocol":"ICMP"}]}})),
                Some((
                    "FieldValueNotSupported",
                    "spec.ports[0].protocol",
                    "Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                )),
            ),
            (
                "names required with several ports",
                merged(service(), json!({"spec":{"ports":[{"name":"http","port":80,"protocol":"TCP"},{"port":443,"protocol":"TCP"}]}})),
                Some(("FieldValueRequired", "spec.ports[1].name", "Required value")),
            ),
            (
                "names unique",
                merged(service(), json!({"spec":{"ports":[{"name":"http","port":80,"protocol":"TCP"},{"name":"http","port":443,"protocol":"TCP"}]}})),
                Some(("FieldValueDuplicate", "spec.ports[1].name", "Duplicate value: \"http\"")),
            ),
            (
                "node port in range",
                merged(service(), json!({"spec":{"type":"NodePort","ports":[{"port":80,"protocol":"TCP","nodePort":30080}]}})),
                None,
            ),
            (
                "node port range",
                merged(service(), json!({"spec":{"type":"NodePort","ports":[{"port":80,"protocol":"TCP","nodePort":80}]}})),
                Some((
                    "FieldValueInvalid",
                    "spec.ports[0].nodePort",
                    "Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
                )),
            ),
            (
                "node port with ClusterIP",
                merged(service(), json!({"spec":{"ports":[{"port":80,"protocol":"TCP","nodePort":30080}]}})),
                Some(("FieldValueForbidden", "spec.ports[0].nodePort", "Forbidden: may not be used when `type` is 'ClusterIP'")),
            ),
            (
                "cluster IP",
                merged(service(), json!({"spec":{"clusterIP":"10.0.0.300"}})),
                Some((
                    "FieldValueInvalid",
                    "spec.clusterIP",
                    "Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )),
            ),
            ("external name", json!({"metadata":{"name":"db"},"spec":{"type":"ExternalName","externalName":"db.example.com."}}), None),
            (
                "external name required",
                json!({"metadata":{"name":"db"},"spec":{"type":"ExternalName"}}),
                Some(("FieldValueRequired", "spec.externalName", "Required value")),
            ),
        ];
        for (label, obj, expected) in cases {
            check(label, &validate_create(served("", "Service"), &obj), expected);
        }
        let allocated = merged(service(), json!({"spec":{"clusterIP":"10.0.0.5","clusterIPs":["10.0.0.5"]}}));
        let moved = merged(service(), json!({"spec":{"clusterIP":"10.0.0.6","clusterIPs":["10.0.0.6"]}}));
        check(
            "cluster IP immutable",
            &validate_update(served("", "Service"), &allocated, &moved),
            Some(("FieldValueInvalid", "spec.clusterIP", "Invalid value: \"10.0.0.6\": field is immutable")),
        );
        check("cluster IP kept", &validate_update(served("", "Service"), &allocated, &service()), None);
    }

    #[test]
    fn job_rules() {
        let cases: Vec<(&str, &str, Value, Expected)> = vec![
            ("valid job", "Job", job(), None),
            (
                "job restart policy",
                "Job",
                merged(job(), json!({"spec":{"template":{"spec":{"restartPolicy":"Always"}}}})),
                Some((
                    "FieldValueRequired",
                    "spec.template.spec.restartPolicy",
                    "Required value: valid values: \"OnFailure\", \"Never\"",
                )),
            ),
            (
                "parallelism",
                "Job",
                merged(job(), json!({"spec":{"parallelism":-1}})),
                Some(("FieldValueInvalid", "spec.parallelism", "Invalid value: -1: must be greater than or equal to 0")),
            ),
            (
                "backoff limit",
                "Job",
                merged(job(), json!({"spec":{"backoffLimit":-1}})),
                Some(("FieldValueInvalid", "spec.backoffLimit", "Invalid value: -1: must be greater than or equal to 0")),
            ),
            (
                "completion mode",
                "Job",
                merged(job(), json!({"spec":{"completionMode":"Sometimes"}})),
                Some((
                    "FieldValueNotSupported",
                    "spec.completionMode",
                    "Unsupported value: \"Sometimes\": supported values: \"NonIndexed\", \"Indexed\"",
                )),
            ),
            ("indexed", "Job", merged(job(), json!({"spec":{"completionMode":"Indexed","completions":3}})), None),
            ("zero deadline", "Job", merged(job(), json!({"spec":{"activeDeadlineSeconds":0}})), None),
            (
                "negative deadline",
                "Job",
                merged(job(), json!({"spec":{"activeDeadlineSeconds":-5}})),
                Some(("FieldValueInvalid", "spec.activeDeadlineSeconds", "Invalid value: -5: must be greater than or equal to 0")),
            ),
            (
                "completions",
                "Job",
                merged(job(), json!({"spec":{"completions":-1}})),
                Some(("FieldValueInvalid", "spec.completions", "Invalid value: -1: must be greater than or equal to 0")),
            ),

            ("valid cron job", "CronJob", cron_job(), None),
            ("descriptor", "CronJob", merged(cron_job(), json!({"spec":{"schedule":"@hourly"}})), None),
            ("names and lists", "CronJob", merged(cron_job(), json!({"spec":{"schedule":"0,30 9-17 ? JAN-jun MON-FRI"}})), None),
            ("schedule required", "CronJob", merged(cron_job(), json!({"spec":{"schedule":null}})), Some(("FieldValueRequired", "spec.schedule", "Required value"))),
            (
                "schedule fields",
                "CronJob",
                merged(cron_job(), json!({"spec":{"schedule":"* * *"}})),
                Some(("FieldValueInvalid", "spec.schedule", "Invalid value: \"* * *\": expected exactly 5 fields, found 3: [* * *]")),
            ),
            (
                "schedule range",
                "CronJob",
                merged(cron_job(), json!({"spec":{"schedule":"0-70 * * * *"}})),
                Some(("FieldValueInvalid", "spec.schedule", "Invalid value: \"0-70 * * * *\": end of range (70) above maximum (59): 0-70")),
            ),
            (
                "schedule time zone",
                "CronJob",
                merged(cron_job(), json!({"spec":{"schedule":"TZ=UTC 0 * * * *"}})),
                Some((
                    "FieldValueInvalid",
                    "spec.schedule",
                    "Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                )),
            ),
            (
                "concurrency policy",
                "CronJob",
                merged(cron_job(), json!({"spec":{"concurrencyPolicy":"Never"}})),
                Some((
                    "FieldValueNotSupported",
                    "spec.concurrencyPolicy",
                    "Unsupported value: \"Never\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
                )),
            ),
            (
                "cron job name length",
                "CronJob",
                merged(cron_job(), json!({"metadata":{"name":"a".repeat(53)}})),
                Some((
                    "FieldValueInvalid",
                    "metadata.name",
                    Box::leak(format!("Invalid value: \"{}\": must be no more than 52 characters", "a".repeat(53)).into_boxed_str()),
                )),
            ),
            (
                "cron job template restart policy",
                "CronJob",
                merged(cron_job(), json!({"spec":{"jobTemplate":{"spec":{"template":{"spec":{"restartPolicy":"Always"}}}}}})),
                Some((
                    "FieldValueRequired",
                    "spec.jobTemplate.spec.template.spec.restartPolicy",
                    "Required value: valid values: \"OnFailure\", \"Never\"",
                )),
            ),
        ];
        for (label, kind, obj, expected) in cases {
            check(label, &validate_create(served("batch", kind), &obj), expected);
        }
        let changed = merged(job(), json!({"spec":{"template":{"spec":{"restartPolicy":"OnFailure"}}}}));
        let causes = validate_update(served("batch", "Job"), &job(), &changed);
        assert!(
            causes.iter().any(|c| c.field == "spec.template" && c.message.ends_with(": field is immutable")),
            "{causes:#?}"
        );
        check(
            "job suspended",
            &validate_update(served("batch", "Job"), &job(), &merged(job(), json!({"spec":{"suspend":true}}))),
            None,
        );
    }

    #[test]
    fn config_and_secret_rules() {
        let big = "x".repeat(MAX_DATA_SIZE + 1);
        let cases: Vec<(&str, &str, Value, Expected)> = vec![
            ("valid config map", "ConfigMap", config_map(), None),
            (
                "config key syntax",
                "ConfigMap",
                merged(config_map(), json!({"data":{"a b":"x"}})),
                Some((
                    "FieldValueInvalid",
                    "data[a b]",
                    "Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                )),
            ),
            (
                "key in both",
                "ConfigMap",
                merged(config_map(), json!({"data":{"blob":"x"}})),
                Some(("FieldValueInvalid", "data[blob]", "Invalid value: \"blob\": duplicate of key present in binaryData")),
            ),
            (
                "config map size",
                "ConfigMap",
                merged(config_map(), json!({"data":{"big":big}})),
                Some(("FieldValueTooLong", "", "Too long: may not be more than 1048576 bytes")),
            ),
            ("valid secret", "Secret", secret(), None),
            (
                "tls secret keys",
                "Secret",
                merged(secret(), json!({"type":"kubernetes.io/tls","data":{"tls.crt":"eA=="}})),
                Some(("FieldValueRequired", "data[tls.key]", "Required value")),
            ),
            (
                "secret key syntax",
                "Secret",
                merged(secret(), json!({"data":{"..x":"eA=="}})),
                Some(("FieldValueInvalid", "data[..x]", "Invalid value: \"..x\": must not start with '..'")),
            ),
        ];
        for (label, kind, obj, expected) in cases {
            check(label, &validate_create(served("", kind), &obj), expected);
        }
        let retyped = merged(secret(), json!({"type":"kubernetes.io/basic-auth","data":{"username":"dQ=="}}));
        check(
            "secret type immutable",
            &validate_update(served("", "Secret"), &secret(), &retyped),
            Some(("FieldValueInvalid", "type", "Invalid value: \"kubernetes.io/basic-auth\": field is immutable")),
        );
        let frozen = merged(secret(), json!({"immutable":true}));
        check(
            "immutable secret data",
            &validate_update(
                served("", "Secret"),
                &frozen,
                &merged(frozen.clone(), json!({"data":{"password":"eA=="}})),
            ),
            Some(("FieldValueForbidden", "data", "Forbidden: field is immutable when `immutable` is set")),
        );
        check(
            "immutable secret labels",
            &validate_update(
                served("", "Secret"),
                &frozen,
                &merged(frozen.clone(), json!({"metadata":{"labels":{"a":"b"}}})),
            ),
            None,
        );
        let frozen_map = merged(config_map(), json!({"immutable":true}));
        check(
            "immutable config map",
            &validate_update(
                served("", "ConfigMap"),
                &frozen_map,
                &merged(frozen_map.clone(), json!({"immutable":false})),
            ),
            Some(("FieldValueForbidden", "immutable", "Forbidden: field is immutable when `immutable` is set")),
        );
        check(
            "mutable config map",
            &validate_update(served("", "ConfigMap"), &config_map(), &merged(config_map(), json!({"data":{"k":"v"}}))),
            None,
        );
    }

    #[test]
    fn autoscaling_and_discovery_rules() {
        let cases: Vec<(&str, &str, &str, Value, Expected)> = vec![
            ("valid hpa", "autoscaling", "HorizontalPodAutoscaler", hpa(), None),
            (
                "target kind",
                "autoscaling",
                "HorizontalPodAutoscaler",
                merged(hpa(), json!({"spec":{"scaleTargetRef":{"kind":null}}})),
                Some(("FieldValueRequired", "spec.scaleTargetRef.kind", "Required value")),
            ),
            (
                "target name",
                "autoscaling",
                "HorizontalPodAutoscaler",
                merged(hpa(), json!({"spec":{"scaleTargetRef":{"name":""}}})),
                Some(("FieldValueRequired", "spec.scaleTargetRef.name", "Required value")),
            ),
            (
                "min replicas",
                "autoscaling",
                "HorizontalPodAutoscaler",
                merged(hpa(), json!({"spec":{"minReplicas":0}})),
                Some(("FieldValueInvalid", "spec.minReplicas", "Invalid value: 0: must be greater than or equal to 1")),
            ),
            (
                "max below min",
                "autoscaling",
                "HorizontalPodAutoscaler",
                merged(hpa(), json!({"spec":{"minReplicas":3,"maxReplicas":2}})),
                Some((
                    "FieldValueInvalid",
                    "spec.maxReplicas",
                    "Invalid value: 2: must be greater than or equal to `minReplicas`",
                )),
            ),
            (
                "max replicas",
                "autoscaling",
                "HorizontalPodAutoscaler",
                merged(hpa(), json!({"spec":{"minReplicas":null,"maxReplicas":0}})),
                Some(("FieldValueInvalid", "spec.maxReplicas", "Invalid value: 0: must be greater than 0")),
            ),
            ("valid slice", "discovery.k8s.io", "EndpointSlice", endpoint_slice(), None),
            (
                "address type",
                "discovery.k8s.io",
                "EndpointSlice",
                merged(endpoint_slice(), json!({"addressType":"IPv5"})),
                Some((
                    "FieldValueNotSupported",
                    "addressType",
                    "Unsupported value: \"IPv5\": supported values: \"FQDN\", \"IPv4\", \"IPv6\"",
                )),
            ),
        ];
        for (label, group, kind, obj, expected) in cases {
            check(label, &validate_create(served(group, kind), &obj), expected);
        }
    }

    #[test]
    fn kubectl_deployment_after_defaults_is_valid() {
        let mut d = json!({"apiVersion":"apps/v1","kind":"Deployment",
            "metadata":{"name":"nginx","namespace":"default","labels":{"app":"nginx"}},
            "spec":{"replicas":3,"selector":{"matchLabels":{"app":"nginx"}},
                "template":{"metadata":{"labels":{"app":"nginx"}},
                    "spec":{"containers":[{"name":"nginx","image":"nginx:1.14.2","ports":[{"containerPort":80}],
                        "resources":{}}]}},
                "strategy":{}},
            "status":{}});
        crate::apis::defaults::apply_defaults(served("apps", "Deployment"), &mut d);
        assert_eq!(validate_create(served("apps", "Deployment"), &d), Vec::<Cause>::new());
        assert_eq!(validate_update(served("apps", "Deployment"), &d, &d), Vec::<Cause>::new());
    }

    #[test]
    fn replication_controller_and_pod_template_rules() {
        let template = json!({"metadata":{"labels":{"app":"web"}},
            "spec":{"restartPolicy":"Always","dnsPolicy":"ClusterFirst",
                "containers":[{"name":"c","image":"nginx","imagePullPolicy":"Always","terminationMessagePolicy":"File"}]}});
        let rc = json!({"metadata":{"name":"web","namespace":"default"},
            "spec":{"replicas":1,"selector":{"app":"web"},"template":template.clone()}});
        check("valid controller", &validate_create(served("", "ReplicationController"), &rc), None);
        check(
            "selector must match the template",
            &validate_create(
                served("", "ReplicationController"),
                &merged(rc.clone(), json!({"spec":{"selector":{"app":"db"}}})),
            ),
            Some((
                "FieldValueInvalid",
                "spec.template.metadata.labels",
                "Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
            )),
        );
        let never = merged(rc, json!({"spec":{"template":{"spec":{"restartPolicy":"Never"}}}}));
        check(
            "controllers restart their pods",
            &validate_create(served("", "ReplicationController"), &never),
            Some((
                "FieldValueNotSupported",
                "spec.template.spec.restartPolicy",
                "Unsupported value: \"Never\": supported values: \"Always\"",
            )),
        );
        let pod_template = json!({"metadata":{"name":"t","namespace":"default"},"template":template});
        check("valid pod template", &validate_create(served("", "PodTemplate"), &pod_template), None);
        let nameless = merged(pod_template, json!({"template":{"spec":{"containers":[{"name":null}]}}}));
        check(
            "pod template containers are validated",
            &validate_create(served("", "PodTemplate"), &nameless),
            Some(("FieldValueRequired", "template.spec.containers[0].name", "Required value")),
        );
    }

    #[test]
    fn odd_shapes_do_not_panic() {
        let odd = [
            json!(null),
            json!([]),
            json!("x"),
            json!({"metadata":7,"spec":[1,2]}),
            json!({"metadata":{"name":5,"labels":[1],"annotations":"a"},"spec":{"containers":{"a":1},"selector":"x",
                "template":7,"ports":"x","schedule":5,"jobTemplate":[],"strategy":"x","tolerations":[7]}}),
        ];
        for resource in RESOURCES {
            for a in &odd {
                validate_create(resource, a);
                for b in &odd {
                    validate_update(resource, a, b);
                }
            }
        }
        for schedule in
            ["", "@every", "@every 1h30m", "@every x", "1-2-3 * * * *", "*/x * * * *", "5/0 * * * *", "-1 * * * *"]
        {
            let _ = parse_cron_schedule(schedule);
        }
    }
}
