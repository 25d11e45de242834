//! The TOML config file of `raftsman server --config FILE` and `raftsman agent --config FILE`: each key is a
//! long flag of the command, without its dashes (`peer-addr = "10.0.0.1:2380"`), and means exactly what that
//! flag means; a flag given on the command line wins over the file's key. So the file and the flags can never
//! disagree on what a setting means, and `--help` documents both.
//!
//! Pure: the file's text becomes the flags it stands for, which `main` puts in front of the command line's
//! before clap parses them.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;

/// The flag that names the file; read before the others, so it cannot itself be a key.
pub const CONFIG_FLAG: &str = "config";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigFileError {
    #[error("{0}")]
    Syntax(String),
    #[error("unknown setting `{key}`: the keys are the command's long flags{hint}")]
    UnknownKey { key: String, hint: String },
    #[error("`{0}` cannot be set in a config file")]
    Config(String),
    #[error("`{key}` is a switch: true or false, got {got}")]
    Switch { key: String, got: String },
    #[error("`{key}` takes one value (a string, a number or true/false), got {got}")]
    OneValue { key: String, got: String },
    #[error("`{key}` takes strings or numbers, got {got}")]
    ListItem { key: String, got: String },
}

/// What a config file needs to know of one long flag of the command.
#[derive(Debug, Clone)]
pub struct Flag {
    pub long: String,
    /// `--insecure-api` is a switch; `--name N` takes a value.
    pub takes_value: bool,
    /// The separator of a flag that takes a list (`--servers a,b`), if it takes one.
    pub delimiter: Option<char>,
}

impl Flag {
    /// The long flags of `command` (a subcommand of the CLI).
    pub fn of(command: &clap::Command) -> Vec<Flag> {
        command
            .get_arguments()
            .filter_map(|arg| {
                let long = arg.get_long()?.to_owned();
                let takes_value = arg.get_action().takes_values();
                Some(Flag { long, takes_value, delimiter: arg.get_value_delimiter() })
            })
            .collect()
    }
}

/// The file `--config FILE` (or `--config=FILE`) names among `args` (a subcommand's arguments, after its
/// name), up to a `--`.
pub fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let flag = format!("--{CONFIG_FLAG}");
    let mut args = args.iter().map_while(|arg| (arg != "--").then_some(arg));
    while let Some(arg) = args.next() {
        if *arg == *flag {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix(&flag)?.strip_prefix('=')) {
            return Some(PathBuf::from(path));
        }
    }
    None
}

/// The long flags `args` (a subcommand's arguments, after its name) give, up to a `--`.
pub fn flags_given(args: &[OsString]) -> BTreeSet<String> {
    args.iter()
        .map_while(|arg| (arg != "--").then_some(arg))
        .filter_map(|arg| {
            arg.to_str()?.strip_prefix("--").map(|flag| flag.split('=').next().unwrap_or(flag).to_owned())
        })
        .collect()
}

/// The flags the config file `text` stands for, leaving out the ones in `given` (the command line's, which
/// win). Keys come out in the order of their names, each as `--key=value` so that a value starting with
/// a dash stays a value.
pub fn args_from_file(text: &str, flags: &[Flag], given: &BTreeSet<String>) -> Result<Vec<OsString>, ConfigFileError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigFileError::Syntax(e.to_string()))?;
    let mut args = Vec::new();
    for (key, value) in &table {
        if key == CONFIG_FLAG {
            return Err(ConfigFileError::Config(key.clone()));
        }
        let Some(flag) = flags.iter().find(|f| &f.long == key) else {
            let dashed = key.replace('_', "-");
            let hint = match flags.iter().any(|f| f.long == dashed) {
                true => format!(" (did you mean `{dashed}`?)"),
                false => String::new(),
            };
            return Err(ConfigFileError::UnknownKey { key: key.clone(), hint });
        };
        if given.contains(key) {
            continue;
        }
        if !flag.takes_value {
            match value {
                toml::Value::Boolean(true) => args.push(OsString::from(format!("--{key}"))),
                toml::Value::Boolean(false) => {}
                other => return Err(ConfigFileError::Switch { key: key.clone(), got: describe(other) }),
            }
            continue;
        }
        let text = match (value, flag.delimiter) {
            (toml::Value::Array(items), Some(delimiter)) => {
                let items: Result<Vec<String>, _> = items
                    .iter()
                    .map(|item| {
                        scalar(item).ok_or_else(|| ConfigFileError::ListItem { key: key.clone(), got: describe(item) })
                    })
                    .collect();
                items?.join(&delimiter.to_string())
            }
            (value, _) => {
                scalar(value).ok_or_else(|| ConfigFileError::OneValue { key: key.clone(), got: describe(value) })?
            }
        };
        args.push(OsString::from(format!("--{key}={text}")));
    }
    Ok(args)
}

/// A string, number or boolean as the command line spells it.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::Array(_) => "a list".to_owned(),
        toml::Value::Table(_) => "a table".to_owned(),
        other => format!("{} {other}", other.type_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Vec<Flag> {
        let flag = |long: &str, takes_value, delimiter| Flag { long: long.to_owned(), takes_value, delimiter };
        vec![
            flag("name", true, None),
            flag("peer-addr", true, None),
            flag("snapshot-count", true, None),
            flag("insecure-api", false, None),
            flag("service-proxy", true, None),
            flag("servers", true, Some(',')),
            flag("config", true, None),
        ]
    }

    fn args(text: &str, given: &[&str]) -> Result<Vec<String>, ConfigFileError> {
        let given = given.iter().map(|g| g.to_string()).collect();
        let args = args_from_file(text, &flags(), &given)?;
        Ok(args.into_iter().map(|a| a.into_string().unwrap()).collect())
    }

    #[test]
    fn keys_become_the_flags_they_name() {
        let text = r#"
            name = "n1"
            peer-addr = "10.0.0.1:2380"
            snapshot-count = 5000
            insecure-api = true
            service-proxy = false
            servers = ["10.0.0.1:6443", "10.0.0.2:6443"]
        "#;
        assert_eq!(
            args(text, &[]).unwrap(),
            [
                "--insecure-api",
                "--name=n1",
                "--peer-addr=10.0.0.1:2380",
                "--servers=10.0.0.1:6443,10.0.0.2:6443",
                "--service-proxy=false",
                "--snapshot-count=5000",
            ]
        );
        assert_eq!(args("insecure-api = false", &[]).unwrap(), Vec::<String>::new());
        assert_eq!(args("name = \"-n\"", &[]).unwrap(), ["--name=-n"], "a value that starts with a dash");
    }

    #[test]
    fn the_command_line_wins() {
        assert_eq!(
            args("name = \"n1\"\npeer-addr = \"10.0.0.1:2380\"", &["name"]).unwrap(),
            ["--peer-addr=10.0.0.1:2380"]
        );
    }

    #[test]
    fn what_is_not_a_flag_is_refused_by_name() {
        let unknown = args("peer_addr = \"x\"", &[]).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "unknown setting `peer_addr`: the keys are the command's long flags (did you mean `peer-addr`?)"
        );
        assert!(matches!(args("color = 1", &[]), Err(ConfigFileError::UnknownKey { hint, .. }) if hint.is_empty()));
        assert_eq!(args("config = \"other.toml\"", &[]), Err(ConfigFileError::Config("config".into())));
        // Even a key the command line overrides must be a real flag.
        assert!(matches!(args("nmae = \"n1\"", &["nmae"]), Err(ConfigFileError::UnknownKey { .. })));
    }

    #[test]
    fn values_of_the_wrong_shape_are_refused() {
        assert!(matches!(args("insecure-api = \"yes\"", &[]), Err(ConfigFileError::Switch { .. })));
        assert!(matches!(args("name = [\"a\", \"b\"]", &[]), Err(ConfigFileError::OneValue { .. })));
        assert!(matches!(args("[name]\nx = 1", &[]), Err(ConfigFileError::OneValue { .. })));
        assert!(matches!(args("servers = [[\"a\"]]", &[]), Err(ConfigFileError::ListItem { .. })));
        assert!(matches!(args("name = ", &[]), Err(ConfigFileError::Syntax(_))));
    }

    #[test]
    fn the_file_is_the_value_of_config() {
        let line = |words: &[&str]| -> Vec<OsString> { words.iter().map(OsString::from).collect() };
        assert_eq!(config_path(&line(&["--name", "n1", "--config", "a.toml"])), Some(PathBuf::from("a.toml")));
        assert_eq!(config_path(&line(&["--config=/etc/b.toml"])), Some(PathBuf::from("/etc/b.toml")));
        assert_eq!(config_path(&line(&["--configs=c", "--", "--config", "d"])), None);
        assert_eq!(config_path(&line(&["--config"])), None);
    }

    #[test]
    fn the_flags_a_command_line_gives_are_its_long_flags_up_to_a_double_dash() {
        let line: Vec<OsString> =
            ["--name", "n1", "--peer-addr=x", "value", "--", "--data-dir"].map(OsString::from).into();
        assert_eq!(flags_given(&line), BTreeSet::from(["name".to_owned(), "peer-addr".to_owned()]));
    }
}
