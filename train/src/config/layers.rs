//! Resolves a [`TrainingConfig`] from its defaults and a JSON file (flags are applied on the
//! result by the command line).
//!
//! burn's derived config deserialises only complete files and silently accepts unknown fields, so
//! a misspelt setting would train with its default. Here a file may be partial: it is merged over
//! the defaults' JSON, and any key the defaults do not have is refused, naming the file and the
//! dotted key. A section that is off by default (`scl`, `uerm`, `model.arm`, `data.noise`) starts
//! from its own defaults when the file turns it on, so `"uerm": {"margin": 0.1}` is enough.

use std::path::Path;

use serde_json::{Map, Value};

use super::{ConfigError, NoiseConfig, SclConfig, TrainingConfig, UermConfig};
use crate::data::noise::NoiseKind;
use crate::model::lanet::ArmOptions;

/// The defaults of the sections that are absent (`null`) by default, by dotted path: what a
/// section starts from when a file or a flag turns it on.
pub fn section_defaults() -> Vec<(&'static str, Value)> {
    // Through text, so that an `f32` setting reads as its shortest decimal (0.2, not
    // 0.20000000298023224) where `--help` shows it.
    fn json<T: serde::Serialize>(section: T) -> Value {
        let text = serde_json::to_string(&section).expect("configs serialise to JSON");
        serde_json::from_str(&text).expect("JSON reads back")
    }
    vec![
        ("scl", json(SclConfig::new())),
        ("uerm", json(UermConfig::new())),
        ("model.arm", json(ArmOptions::new())),
        ("data.noise", json(NoiseConfig::new(NoiseKind::Symmetric))),
    ]
}

/// The defaults, with the file at `path` (if any) merged over them.
///
/// # Errors
/// [`ConfigError::Read`], [`ConfigError::Parse`] (not JSON, or a value of the wrong type) or
/// [`ConfigError::UnknownKey`], each naming the file.
pub fn resolve(path: Option<&Path>) -> Result<TrainingConfig, ConfigError> {
    let Some(path) = path else {
        return Ok(TrainingConfig::new());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    from_json(&text, path)
}

/// The defaults with `text` (JSON, read from `path`) merged over them.
///
/// # Errors
/// As [`resolve`].
pub fn from_json(text: &str, path: &Path) -> Result<TrainingConfig, ConfigError> {
    let parse = |e: serde_json::Error| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file: Value = serde_json::from_str(text).map_err(parse)?;
    let mut merged = serde_json::to_value(TrainingConfig::new()).expect("configs serialise");
    merge(&mut merged, file, "", &section_defaults(), path)?;
    serde_json::from_value(merged).map_err(parse)
}

/// Merges `patch` (from the file `file`) into `base`: objects key by key, anything else replaces.
/// Refuses the first setting `base` does not have.
fn merge(
    base: &mut Value,
    patch: Value,
    at: &str,
    sections: &[(&str, Value)],
    file: &Path,
) -> Result<(), ConfigError> {
    let Value::Object(patch) = patch else {
        *base = patch;
        return Ok(());
    };
    if base.is_null() {
        if let Some((_, defaults)) = sections.iter().find(|(p, _)| *p == at) {
            *base = defaults.clone();
        }
    }
    let Value::Object(fields) = base else {
        // A value of the wrong shape: serde names it when the result is deserialised.
        *base = Value::Object(patch);
        return Ok(());
    };
    for (key, value) in patch {
        let path = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        match fields.get_mut(&key) {
            Some(slot) => merge(slot, value, &path, sections, file)?,
            None => {
                return Err(ConfigError::UnknownKey {
                    path: file.to_path_buf(),
                    key: path,
                })
            }
        }
    }
    Ok(())
}

/// The config as the pretty JSON that `config.json` and `--print-config` hold.
pub fn to_json(config: &TrainingConfig) -> String {
    serde_json::to_string_pretty(config).expect("configs serialise to JSON")
}

/// `Map` of a config's JSON, for comparing two configs (burn's configs have no `PartialEq`).
pub fn as_map(config: &TrainingConfig) -> Map<String, Value> {
    match serde_json::from_str(&to_json(config)).expect("configs serialise to JSON") {
        Value::Object(m) => m,
        _ => unreachable!("a config is a JSON object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Method;

    #[test]
    fn a_partial_file_keeps_every_other_default() {
        let c = from_json(
            r#"{"epochs": 15, "model": {"width": 8}, "uerm": {"margin": 0.1}}"#,
            Path::new("run.json"),
        )
        .unwrap();
        assert_eq!(c.epochs, 15);
        assert_eq!(c.model.width, 8);
        assert_eq!(c.model.blocks, 2);
        assert_eq!(c.method, Method::Lanet);
        let u = c.uerm.unwrap();
        assert_eq!((u.margin, u.fraction, u.from, u.window), (0.1, 0.3, 5, 3));
        assert!(c.scl.is_none());
    }

    #[test]
    fn an_unknown_key_is_refused_with_the_file_and_the_dotted_key() {
        let err = from_json(r#"{"model": {"widht": 8}}"#, Path::new("run.json")).unwrap_err();
        match &err {
            ConfigError::UnknownKey { path, key } => {
                assert_eq!(path, Path::new("run.json"));
                assert_eq!(key, "model.widht");
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("run.json"), "{err}");
        let err = from_json(r#"{"scl": {"wieght": 1}}"#, Path::new("a.json")).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownKey { ref key, .. } if key == "scl.wieght"));
    }

    #[test]
    fn a_wrong_type_names_the_file() {
        let err = from_json(r#"{"epochs": "many"}"#, Path::new("x.json")).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        assert!(err.to_string().starts_with("x.json: "), "{err}");
    }

    #[test]
    fn the_printed_config_reads_back_as_itself() {
        let c = TrainingConfig::new().with_uerm(Some(UermConfig::new()));
        let back = from_json(&to_json(&c), Path::new("config.json")).unwrap();
        assert_eq!(as_map(&back), as_map(&c));
    }
}
