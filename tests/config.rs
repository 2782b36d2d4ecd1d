//! `--config FILE` and the options' environment variables through the binary: the same run from
//! flags and from a file, precedence flag > environment > file > default, refused keys and values
//! naming the file, `--print-config` read back.

use std::path::Path;
use std::process::{Command, Output};

use crate::util::{fixture, json_lines, stderr, PORTRAITS};

/// The binary with `args` and `env` (the test's own EDGE_FER_* variables removed first).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_edge-fer"));
    for (key, _) in std::env::vars() {
        if key.starts_with("EDGE_FER_") && key != "EDGE_FER_LANDMARKS_MODEL" {
            command.env_remove(key);
        }
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn write(dir: &Path, text: &str) -> String {
    let path = dir.join("edge-fer.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// The output lines without their read times.
fn results(out: &Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "{}", stderr(out));
    json_lines(out)
        .into_iter()
        .map(|mut line| {
            line.as_object_mut().unwrap().remove("timestamp_ms");
            line
        })
        .collect()
}

#[test]
fn a_file_gives_the_same_run_as_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let images: Vec<String> = PORTRAITS
        .iter()
        .map(|p| fixture(p).to_str().unwrap().to_string())
        .collect();
    let mut flags = vec!["--image"];
    flags.extend(images.iter().map(String::as_str));
    flags.extend([
        "--max-faces",
        "1",
        "--privacy",
        "--attention-cone",
        "12.5",
        "--smooth",
        "0.5",
    ]);
    let from_flags = results(&run(&flags, &[]));

    let list = images
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let file = write(
        dir.path(),
        &format!(
            "# A kiosk's settings\nimage = [{list}]\nmax-faces = 1\nprivacy = true\nattention-cone = 12.5\nsmooth = 0.5\n"
        ),
    );
    let from_file = results(&run(&["--config", &file], &[]));
    assert_eq!(from_file.len(), PORTRAITS.len());
    assert_eq!(from_flags, from_file);
    // The file's privacy took effect: no landmarks.
    assert!(from_file[0]["faces"][0].get("landmarks").is_none());
    // The file named by the environment does the same.
    let from_env_file = results(&run(&[], &[("EDGE_FER_CONFIG", &file)]));
    assert_eq!(from_flags, from_env_file);

    // --print-config writes them back as a file that gives the same run again.
    let out = run(&[flags.as_slice(), &["--print-config"]].concat(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.contains("max-faces = 1") && printed.contains("privacy = true"),
        "{printed}"
    );
    let file = write(dir.path(), &printed);
    assert_eq!(from_flags, results(&run(&["--config", &file], &[])));
}

#[test]
fn a_flag_wins_over_the_environment_which_wins_over_the_file_which_wins_over_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let image = fixture("astronaut.png");
    let image = image.to_str().unwrap();
    let file = write(
        dir.path(),
        &format!("image = [{image:?}]\nformat = \"text\"\nattention-cone = 5\n"),
    );
    let text_or_json = |out: &Output| -> &'static str {
        assert!(out.status.success(), "{}", stderr(out));
        if out.stdout.starts_with(b"{") {
            "json"
        } else {
            "text"
        }
    };
    // Default json; the file says text; the environment json; the flag text.
    assert_eq!(text_or_json(&run(&["--image", image], &[])), "json");
    assert_eq!(text_or_json(&run(&["--config", &file], &[])), "text");
    let env = [("EDGE_FER_FORMAT", "json")];
    assert_eq!(text_or_json(&run(&["--config", &file], &env)), "json");
    assert_eq!(
        text_or_json(&run(&["--config", &file, "--format", "text"], &env)),
        "text"
    );
    // A file's cone of 5 degrees leaves the astronaut (yaw ~1, pitch ~-6) not looking; the
    // environment's 20 makes her look again; a flag's 3 not.
    let looking = |out: &Output| json_lines(out)[0]["faces"][0]["looking"].as_bool().unwrap();
    let json = ["--config", &file, "--format", "json"];
    assert!(!looking(&run(&json, &[])));
    assert!(looking(&run(&json, &[("EDGE_FER_ATTENTION_CONE", "20")])));
    assert!(!looking(&run(
        &[json.as_slice(), &["--attention-cone", "3"]].concat(),
        &[("EDGE_FER_ATTENTION_CONE", "20")]
    )));
    // A flag for another input wins over the file's: --frames instead of its images.
    let frames = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("biden.jpg"), frames.path().join("a.jpg")).unwrap();
    let out = run(
        &[
            "--config",
            &file,
            "--format",
            "json",
            "--frames",
            frames.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(json_lines(&out)[0]["source"]
        .as_str()
        .unwrap()
        .ends_with("a.jpg"));
}

#[test]
fn unknown_keys_and_values_out_of_range_are_refused_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let image = fixture("astronaut.png");
    let image = image.to_str().unwrap();
    for (text, says) in [
        (
            format!("image = [{image:?}]\nmax-face = 2\n"),
            "unknown key `max-face`; did you mean `max-faces`?",
        ),
        (
            format!("image = [{image:?}]\nmax-faces = 0\n"),
            "key `max-faces`: invalid value '0'",
        ),
        (
            format!("image = [{image:?}]\nsmooth = 2.0\n"),
            "key `smooth`: invalid value '2'",
        ),
        (
            format!("image = [{image:?}]\nmqtt = \"broker:1883\"\n"),
            "key `mqtt`",
        ),
        (
            format!("image = {image:?}\nprivacy = \"yes\"\n"),
            "key `privacy`: expected true or false",
        ),
        ("image = [\n".to_string(), "config file"),
    ] {
        let file = write(dir.path(), &text);
        let out = run(&["--config", &file], &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(says) && err.contains(&file), "{text}: {err}");
        assert!(out.stdout.is_empty());
    }
    let out = run(&["--config", "/nonexistent/edge-fer.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read the config file /nonexistent/edge-fer.toml"));
    // An environment variable's bad value is clap's own error, naming the option.
    let out = run(&["--image", image], &[("EDGE_FER_MAX_FACES", "0")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--max-faces"), "{}", stderr(&out));
}

/// The packaged service's config file, as the binary reads it.
#[test]
fn the_packaged_config_file_is_valid_and_says_camera_0_in_privacy_mode() {
    let file = crate::util::repo("cross/debian/edge-fer.toml");
    let out = run(&["--config", file.to_str().unwrap(), "--print-config"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: toml::Table = String::from_utf8(out.stdout).unwrap().parse().unwrap();
    assert_eq!(printed["camera"].as_integer(), Some(0));
    assert_eq!(printed["privacy"].as_bool(), Some(true));
    assert_eq!(printed["verbose"].as_integer(), Some(1));
}

/// The upgrade path from 0.1's `edge-fer.conf` (EDGE_FER_ARGS): `cross/debian/migrate-conf`,
/// which the package's postinst runs, turns an edited one into an equivalent edge-fer.toml.
#[test]
fn an_old_environment_file_is_carried_over_into_an_equivalent_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("edge-fer.conf");
    std::fs::write(
        &old,
        "# edited by the admin\n\
         EDGE_FER_ARGS=\"--camera 1 --width 320 --height 240 --serve 0.0.0.0:8080 --max-faces 3 --attention-pitch -15 --privacy\"\n\
         EDGE_FER_LANDMARKS_MODEL=/usr/share/dlib/shape_predictor_68_face_landmarks.dat\n\
         RUST_LOG=debug\n",
    )
    .unwrap();
    let new = dir.path().join("edge-fer.toml");
    let migrate = |old: &Path| {
        Command::new(crate::util::repo("cross/debian/migrate-conf"))
            .arg(old)
            .arg(&new)
            .arg(env!("CARGO_BIN_EXE_edge-fer"))
            .output()
            .unwrap()
    };
    let out = migrate(&old);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&new).unwrap();
    let table: toml::Table = text.parse().unwrap();
    assert_eq!(table["camera"].as_integer(), Some(1), "{text}");
    assert_eq!(table["serve"].as_str(), Some("0.0.0.0:8080"), "{text}");
    assert_eq!(table["attention-pitch"].as_integer(), Some(-15), "{text}");
    assert_eq!(table["privacy"].as_bool(), Some(true), "{text}");
    assert_eq!(table["verbose"].as_integer(), Some(2), "{text}");
    // The new file means what the old command line meant.
    let from_file = run(&["--config", new.to_str().unwrap(), "--print-config"], &[]);
    let from_flags = run(
        &[
            "--camera",
            "1",
            "--width",
            "320",
            "--height",
            "240",
            "--serve",
            "0.0.0.0:8080",
            "--max-faces",
            "3",
            "--attention-pitch",
            "-15",
            "--privacy",
            "--landmarks-model",
            "/usr/share/dlib/shape_predictor_68_face_landmarks.dat",
            "-vv",
            "--print-config",
        ],
        &[],
    );
    assert!(from_file.status.success(), "{}", stderr(&from_file));
    assert_eq!(
        String::from_utf8_lossy(&from_file.stdout),
        String::from_utf8_lossy(&from_flags.stdout)
    );

    // A command line that no longer parses leaves the new file as it was, and says why.
    std::fs::write(&old, "EDGE_FER_ARGS=\"--camera 0 --no-such-flag\"\n").unwrap();
    let out = migrate(&old);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--no-such-flag"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&new).unwrap(), text);
}
