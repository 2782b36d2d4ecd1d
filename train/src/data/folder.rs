//! A plain folder tree: `ROOT/<label>/<image>`, one sub-folder per class, named by the class
//! (`anger` or `angry`, `happiness` or `happy`, ...; see [`Expression::from_name`]).

use std::path::Path;

use edge_fer::capture::IMAGE_EXTENSIONS;

use super::{ClassSet, DataError, Expression, Loaded, Sample, Split};

/// Reads every image under `root/<label>/` as `split`; classes outside `classes` are skipped.
///
/// # Errors
/// [`DataError::Io`] if `root` cannot be listed, [`DataError::Empty`] if no image is usable.
pub fn read(root: &Path, classes: ClassSet, split: Split) -> Result<Loaded, DataError> {
    let mut out = Loaded::default();
    let mut dirs: Vec<_> = std::fs::read_dir(root)
        .map_err(|e| DataError::io(root, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let Some(label) = Expression::from_name(&name) else {
            out.skip(
                &dir,
                None,
                format!(
                    "folder {name:?} is not a class name (expected one of {})",
                    classes.names().join(", ")
                ),
            );
            continue;
        };
        if !classes.contains(label) {
            out.skip(
                &dir,
                None,
                format!("class {label} is not in the {}-class set", classes.count()),
            );
            continue;
        }
        let mut files: Vec<_> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                out.skip(&dir, None, format!("cannot list: {e}"));
                continue;
            }
        };
        files.sort();
        for file in files {
            let is_image = file
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
            if is_image {
                out.samples.push(Sample::file(file, label, split));
            } else if file.is_file() {
                out.skip(&file, None, "not an image file (by extension)");
            }
        }
    }
    out.non_empty(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_name_the_classes() {
        let dir = tempfile::tempdir().unwrap();
        for (folder, file) in [
            ("happy", "a.jpg"),
            ("Anger", "b.PNG"),
            ("contempt", "c.jpg"),
            ("misc", "d.jpg"),
            ("sad", "notes.txt"),
        ] {
            std::fs::create_dir_all(dir.path().join(folder)).unwrap();
            std::fs::write(dir.path().join(folder).join(file), b"x").unwrap();
        }
        let loaded = read(dir.path(), ClassSet::Seven, Split::Train).unwrap();
        let labels: Vec<_> = loaded.samples.iter().map(|s| s.label).collect();
        assert_eq!(labels, [Expression::Anger, Expression::Happiness]);
        assert_eq!(loaded.skipped.len(), 3, "{:?}", loaded.skipped);
        let eight = read(dir.path(), ClassSet::Eight, Split::Train).unwrap();
        assert_eq!(eight.samples.len(), 3);
    }
}
