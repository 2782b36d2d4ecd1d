//! A TOML config file and environment variables for any long option of a clap command, with
//! precedence flag > environment > file > default, derived from the command itself: an option
//! added to the command is in the file and the environment with no code of its own.
//!
//! A key is an option's long name (`max-faces = 4`, `privacy = true`, `image = ["a.png"]`,
//! `serve = "0.0.0.0:8080"`, or `serve = true` for its default address). The environment
//! variable is the long name in upper case with `_`, after a prefix (`EDGE_FER_MAX_FACES=4`). The
//! file's options become command-line arguments appended after the real ones, unless the
//! command line or the environment sets that option or one that excludes it (so `--image` on the
//! command line wins over the file's `camera`); clap then parses and checks everything once.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};

/// What is wrong with a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It cannot be read.
    #[error("cannot read the config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not TOML.
    #[error("config file {}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line.
        message: String,
    },
    /// A key names no option.
    #[error("config file {}: unknown key `{key}`{hint}", path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// A near option, as `; did you mean ...?`, or nothing.
        hint: String,
    },
    /// A key's value cannot be that option's.
    #[error("config file {}: key `{key}`: {reason}", path.display())]
    Value {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// The command with an environment variable (`PREFIX_LONG_NAME`) for each long option that has
/// none of its own, except help, version, counted flags and the long names in `skip`.
pub fn with_env(command: Command, prefix: &str, skip: &[&str]) -> Command {
    let prefix = prefix.to_string();
    let skip: Vec<String> = skip.iter().map(ToString::to_string).collect();
    command.mut_args(move |arg| {
        let takes_env = arg.get_env().is_none()
            && !arg.get_long().is_some_and(|l| skip.iter().any(|s| s == l))
            && !matches!(
                arg.get_action(),
                ArgAction::Help
                    | ArgAction::HelpShort
                    | ArgAction::HelpLong
                    | ArgAction::Version
                    | ArgAction::Count
            );
        match arg.get_long().map(str::to_string) {
            Some(long) if takes_env => arg.env(env_name(&prefix, &long)),
            _ => arg,
        }
    })
}

fn env_name(prefix: &str, long: &str) -> String {
    format!("{prefix}_{}", long.to_uppercase().replace('-', "_"))
}

/// A command line with a config file's options added.
#[derive(Debug, Clone)]
pub struct Layered {
    /// The arguments to parse: the real ones, then the file's.
    pub args: Vec<OsString>,
    /// The config file, if one was given.
    pub file: Option<PathBuf>,
    /// The long names whose values came from the file.
    pub from_file: BTreeSet<String>,
}

impl Layered {
    /// A clap error about an option the file set, said as the file's error (naming it and the
    /// key); `None` for any other error.
    pub fn blame(&self, error: &clap::Error) -> Option<ConfigError> {
        let path = self.file.as_ref()?;
        let invalid = match error.get(clap::error::ContextKind::InvalidArg)? {
            clap::error::ContextValue::String(s) => s.clone(),
            _ => return None,
        };
        let long = invalid
            .strip_prefix("--")?
            .split([' ', '='])
            .next()?
            .to_string();
        if !self.from_file.contains(&long) {
            return None;
        }
        let rendered = error.render().to_string();
        let reason = rendered
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ")
            .to_string();
        Some(ConfigError::Value {
            path: path.clone(),
            key: long,
            reason,
        })
    }
}

/// `args` (program name first) with the options of the config file named by `config_option`
/// (on the command line, or in its environment variable) appended, where neither the command
/// line nor the environment sets them.
///
/// # Errors
/// [`ConfigError`] for a file that cannot be read, is not TOML, has a key that names no option
/// (or one that cannot be in a file) or a value of the wrong shape. Values are checked by clap
/// when `args` are parsed; [`Layered::blame`] names the file then.
pub fn layer(
    command: &Command,
    args: Vec<OsString>,
    config_option: &str,
) -> Result<Layered, ConfigError> {
    let given = given_options(command, &args);
    let config_arg = command
        .get_arguments()
        .find(|a| a.get_long() == Some(config_option));
    let file = find_value(&args, config_option).or_else(|| {
        config_arg
            .and_then(Arg::get_env)
            .and_then(std::env::var_os)
            .filter(|v| !v.is_empty())
    });
    let Some(file) = file.map(PathBuf::from) else {
        return Ok(Layered {
            args,
            file: None,
            from_file: BTreeSet::new(),
        });
    };
    let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
        path: file.clone(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: file.clone(),
            message: e.to_string().trim_end().to_string(),
        })?;

    let mut layered = Layered {
        args,
        file: Some(file.clone()),
        from_file: BTreeSet::new(),
    };
    for (key, value) in &table {
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
            .filter(|a| {
                !matches!(
                    a.get_action(),
                    ArgAction::Help
                        | ArgAction::HelpShort
                        | ArgAction::HelpLong
                        | ArgAction::Version
                )
            })
            .ok_or_else(|| ConfigError::UnknownKey {
                path: file.clone(),
                key: key.clone(),
                hint: hint(command, key),
            })?;
        if key == config_option {
            return Err(value_error(
                &file,
                key,
                "a config file cannot name another one",
            ));
        }
        let id = arg.get_id().as_str();
        if given.contains(id) || excluded(command, arg, &given) {
            continue; // The command line or the environment has the last word.
        }
        let tokens = tokens(arg, key, value).map_err(|reason| value_error(&file, key, &reason))?;
        layered.args.extend(tokens);
        layered.from_file.insert(key.clone());
    }
    Ok(layered)
}

fn value_error(path: &Path, key: &str, reason: &str) -> ConfigError {
    ConfigError::Value {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// `; did you mean `x`?` for the option nearest `key` by edit distance, if it is near.
fn hint(command: &Command, key: &str) -> String {
    command
        .get_arguments()
        .filter_map(Arg::get_long)
        .map(|long| (strsim::levenshtein(long, key), long))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, long)| format!("; did you mean `{long}`?"))
        .unwrap_or_default()
}

/// The value of `--name VALUE` or `--name=VALUE` on the command line.
fn find_value(args: &[OsString], name: &str) -> Option<OsString> {
    let flag = format!("--{name}");
    let with_equals = format!("--{name}=");
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "--" {
            break;
        }
        if text == flag {
            return iter.next().cloned();
        }
        if let Some(value) = text.strip_prefix(&with_equals) {
            return Some(value.into());
        }
    }
    None
}

/// The ids of the options set on the command line or through their environment variables.
fn given_options(command: &Command, args: &[OsString]) -> BTreeSet<String> {
    let mut given = BTreeSet::new();
    for token in args.iter().skip(1).map(|a| a.to_string_lossy()) {
        if token == "--" {
            break;
        }
        if let Some(long) = token.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or("");
            if let Some(arg) = command.get_arguments().find(|a| {
                a.get_long() == Some(name)
                    || a.get_all_aliases().is_some_and(|al| al.contains(&name))
            }) {
                given.insert(arg.get_id().to_string());
            }
        } else if let Some(shorts) = token.strip_prefix('-') {
            for c in shorts.chars() {
                match command.get_arguments().find(|a| a.get_short() == Some(c)) {
                    Some(arg) => {
                        given.insert(arg.get_id().to_string());
                        if arg.get_action().takes_values() {
                            break; // The rest of the token is its value.
                        }
                    }
                    None => break, // A value such as -15, not flags.
                }
            }
        }
    }
    for arg in command.get_arguments() {
        if arg.get_env().and_then(std::env::var_os).is_some() {
            given.insert(arg.get_id().to_string());
        }
    }
    given
}

/// Whether an option in `given` excludes `arg` (a conflict either way, or a shared group that
/// takes one member).
fn excluded(command: &Command, arg: &Arg, given: &BTreeSet<String>) -> bool {
    let id = arg.get_id();
    let conflicts = command
        .get_arg_conflicts_with(arg)
        .iter()
        .any(|other| given.contains(other.get_id().as_str()));
    let conflicted = command.get_arguments().any(|other| {
        given.contains(other.get_id().as_str())
            && command
                .get_arg_conflicts_with(other)
                .iter()
                .any(|c| c.get_id() == id)
    });
    let grouped = command.get_groups().any(|group| {
        let mut group = group.clone();
        let members: Vec<String> = group.get_args().map(ToString::to_string).collect();
        !group.is_multiple()
            && members.iter().any(|m| m == id.as_str())
            && members
                .iter()
                .any(|m| m != id.as_str() && given.contains(m))
    });
    conflicts || conflicted || grouped
}

/// The command-line tokens that give `arg` the file's `value`.
fn tokens(arg: &Arg, key: &str, value: &toml::Value) -> Result<Vec<OsString>, String> {
    let flag = format!("--{key}");
    let scalar = |v: &toml::Value| -> Result<String, String> {
        match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            other => Err(format!("expected a value, found {}", other.type_str())),
        }
    };
    let takes_values = arg.get_action().takes_values();
    let optional_value = arg.get_num_args().is_some_and(|n| n.min_values() == 0);
    Ok(match (arg.get_action(), value) {
        (ArgAction::SetTrue, toml::Value::Boolean(true)) => vec![flag.into()],
        (ArgAction::SetTrue, toml::Value::Boolean(false)) => vec![],
        (ArgAction::SetTrue, other) => {
            return Err(format!(
                "expected true or false, found {}",
                other.type_str()
            ))
        }
        (ArgAction::Count, toml::Value::Integer(n)) if (0..=16).contains(n) => {
            vec![OsString::from(&flag); *n as usize]
        }
        (ArgAction::Count, _) => return Err("expected a count from 0 to 16".into()),
        // An option whose value is optional: true gives it without one.
        (_, toml::Value::Boolean(true)) if optional_value => vec![flag.into()],
        (_, toml::Value::Boolean(false)) if optional_value => vec![],
        (_, toml::Value::Array(items)) if takes_values => {
            let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1)
                || matches!(arg.get_action(), ArgAction::Append);
            if !many {
                return Err("expected one value, found an array".into());
            }
            items
                .iter()
                .map(|v| scalar(v).map(|s| OsString::from(format!("{flag}={s}"))))
                .collect::<Result<_, _>>()?
        }
        (_, value) if takes_values => vec![format!("{flag}={}", scalar(value)?).into()],
        _ => return Err("this option cannot be set in a config file".into()),
    })
}

/// The options of `matches` that did not come from their defaults, as a config file.
pub fn render(command: &Command, matches: &clap::ArgMatches, skip: &[&str]) -> String {
    use clap::parser::ValueSource;
    let mut table = toml::Table::new();
    for arg in command.get_arguments() {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        if skip.contains(&long)
            || !matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        {
            continue;
        }
        let value = match arg.get_action() {
            ArgAction::SetTrue => toml::Value::Boolean(matches.get_flag(id)),
            ArgAction::Count => toml::Value::Integer(i64::from(matches.get_count(id))),
            _ => {
                let raw: Vec<toml::Value> = matches
                    .get_raw(id)
                    .into_iter()
                    .flatten()
                    .map(typed)
                    .collect();
                match raw.len() {
                    0 => toml::Value::Boolean(true), // An optional value left out.
                    1 if arg.get_num_args().is_none_or(|n| n.max_values() <= 1) => {
                        raw.into_iter().next().unwrap_or(toml::Value::Boolean(true))
                    }
                    _ => toml::Value::Array(raw),
                }
            }
        };
        table.insert(long.to_string(), value);
    }
    toml::to_string(&table).unwrap_or_default()
}

/// A raw value as TOML: a number if it reads as one, else a string.
fn typed(raw: &OsStr) -> toml::Value {
    let text = raw.to_string_lossy().into_owned();
    if let Ok(i) = text.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Some(f) = text.parse::<f64>().ok().filter(|f| f.is_finite()) {
        toml::Value::Float(f)
    } else {
        toml::Value::String(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{value_parser, ArgGroup};

    fn command() -> Command {
        Command::new("t")
            .arg(
                Arg::new("camera")
                    .long("camera")
                    .value_parser(value_parser!(u32)),
            )
            .arg(
                Arg::new("image")
                    .long("image")
                    .num_args(1..)
                    .action(ArgAction::Append),
            )
            .arg(
                Arg::new("max_faces")
                    .long("max-faces")
                    .default_value("8")
                    .value_parser(value_parser!(u32).range(1..)),
            )
            .arg(
                Arg::new("privacy")
                    .long("privacy")
                    .action(ArgAction::SetTrue),
            )
            .arg(
                Arg::new("serve")
                    .long("serve")
                    .num_args(0..=1)
                    .default_missing_value("127.0.0.1:8080"),
            )
            .arg(
                Arg::new("verbose")
                    .short('v')
                    .long("verbose")
                    .action(ArgAction::Count),
            )
            .arg(Arg::new("config").long("config"))
            .group(
                ArgGroup::new("input")
                    .args(["camera", "image"])
                    .required(true),
            )
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        file
    }

    fn parse(args: &[&str]) -> Result<clap::ArgMatches, String> {
        let command = command();
        let args: Vec<OsString> = std::iter::once("t")
            .chain(args.iter().copied())
            .map(Into::into)
            .collect();
        let layered = layer(&command, args, "config").map_err(|e| e.to_string())?;
        command.try_get_matches_from(&layered.args).map_err(|e| {
            layered
                .blame(&e)
                .map_or_else(|| e.to_string(), |c| c.to_string())
        })
    }

    #[test]
    fn the_file_fills_in_what_the_command_line_leaves_out() {
        let file = write("camera = 2\nmax-faces = 3\nprivacy = true\nserve = true\nverbose = 2\n");
        let path = file.path().to_str().unwrap();
        let m = parse(&["--config", path]).unwrap();
        assert_eq!(m.get_one::<u32>("camera"), Some(&2));
        assert_eq!(m.get_one::<u32>("max_faces"), Some(&3));
        assert!(m.get_flag("privacy"));
        assert_eq!(
            m.get_one::<String>("serve").map(String::as_str),
            Some("127.0.0.1:8080")
        );
        assert_eq!(m.get_count("verbose"), 2);
        // The command line wins, and its --image excludes the file's camera.
        let m = parse(&["--config", path, "--max-faces", "5", "--image", "a.png"]).unwrap();
        assert_eq!(m.get_one::<u32>("max_faces"), Some(&5));
        assert_eq!(m.get_one::<u32>("camera"), None);
        let images: Vec<&String> = m.get_many("image").unwrap().collect();
        assert_eq!(images, ["a.png"]);
        let file =
            write("image = [\"a.png\", \"b.png\"]\nserve = \"0.0.0.0:1\"\nprivacy = false\n");
        let m = parse(&[&format!("--config={}", file.path().display())]).unwrap();
        assert_eq!(m.get_many::<String>("image").unwrap().count(), 2);
        assert_eq!(
            m.get_one::<String>("serve").map(String::as_str),
            Some("0.0.0.0:1")
        );
        assert!(!m.get_flag("privacy"));
    }

    #[test]
    fn unknown_keys_wrong_shapes_and_bad_values_name_the_file_and_the_key() {
        for (text, says) in [
            (
                "max-face = 3\ncamera = 0",
                "unknown key `max-face`; did you mean `max-faces`?",
            ),
            ("nothing-like-it = 1", "unknown key `nothing-like-it`"),
            ("camera = [1, 2]", "key `camera`: expected one value"),
            ("privacy = \"yes\"", "key `privacy`: expected true or false"),
            (
                "camera = 0\nmax-faces = 0",
                "key `max-faces`: invalid value '0'",
            ),
            ("camera = 0\nconfig = \"x\"", "key `config`"),
            ("camera = ", "config file"),
            ("[camera]\nx = 1", "expected a value, found table"),
        ] {
            let file = write(text);
            let err = parse(&["--config", file.path().to_str().unwrap()]).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
            assert!(
                err.contains(&file.path().display().to_string()),
                "{text:?}: {err}"
            );
        }
        let err = parse(&["--config", "/nonexistent/edge-fer.toml"]).unwrap_err();
        assert!(
            err.contains("cannot read the config file /nonexistent/edge-fer.toml"),
            "{err}"
        );
    }

    #[test]
    fn render_writes_what_was_given_as_a_file_that_reads_back_the_same() {
        let command = command();
        let m = command
            .clone()
            .try_get_matches_from([
                "t",
                "--image",
                "a b.png",
                "x.png",
                "--max-faces",
                "3",
                "--privacy",
                "--serve",
                "-vv",
            ])
            .unwrap();
        let text = render(&command, &m, &["config"]);
        assert!(!text.contains("camera"), "{text}");
        let file = write(&text);
        let again = parse(&["--config", file.path().to_str().unwrap()]).unwrap();
        assert_eq!(again.get_one::<u32>("max_faces"), Some(&3));
        assert_eq!(
            again
                .get_many::<String>("image")
                .unwrap()
                .collect::<Vec<_>>(),
            ["a b.png", "x.png"]
        );
        assert!(again.get_flag("privacy"));
        assert_eq!(again.get_count("verbose"), 2);
        assert!(again.get_one::<String>("serve").is_some());
    }
}
