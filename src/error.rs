//! The library's one error type.
//!
//! Every variant names the file or device it is about, so a message reaching the user says which
//! input is at fault and, where there is one, what to do about it. Errors that concern a single
//! frame (a corrupt image) are reported by the pipeline and the run goes on; errors that concern a
//! model or a source stop the run before any work starts.

use std::path::PathBuf;

/// What went wrong, with the file, device or value it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read (missing, permissions, I/O).
    // The source is not repeated here: callers print the chain (`{:#}` or [`Error::chain`]).
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A frame's image file is not a decodable image (corrupt, truncated, or not an image).
    #[error("cannot decode image {}: {reason}", path.display())]
    Decode {
        /// The image file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },

    /// A model card is not valid JSON, has unknown or missing fields, or contradicts itself.
    #[error("invalid model card {}: {reason}", path.display())]
    Card {
        /// The card file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// An ONNX model disagrees with the card that describes it.
    #[error(
        "model {} does not match its card {}: {field}: the card says {card_value}, the model has {model_value}",
        model.display(),
        card.display()
    )]
    CardMismatch {
        /// The ONNX file.
        model: PathBuf,
        /// The card file.
        card: PathBuf,
        /// Which property disagrees (e.g. `input shape`).
        field: String,
        /// What the card declares.
        card_value: String,
        /// What the model has.
        model_value: String,
    },

    /// A model file exists but cannot be parsed or prepared (truncated, not ONNX, unsupported).
    #[error("cannot load model {}: {reason}", path.display())]
    ModelLoad {
        /// The model file.
        path: PathBuf,
        /// What the loader said.
        reason: String,
    },

    /// A model file's sha256 is not the one recorded for it.
    #[error(
        "checksum mismatch for {}: expected sha256 {expected}, found {actual}; the file is corrupt or is not the one its card describes",
        path.display()
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The recorded sha256.
        expected: String,
        /// The file's sha256.
        actual: String,
    },

    /// A required model file does not exist.
    #[error("{what} {} not found; {hint}", path.display())]
    MissingModel {
        /// Which model (e.g. `landmark model`).
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// How to get it or point to another one.
        hint: String,
    },

    /// The requested camera does not exist.
    #[error("no camera with index {index}: found {found}; to process files instead use --image FILE... or --frames DIR")]
    NoCamera {
        /// The index asked for.
        index: u32,
        /// What was found, in words (`none`, or the list).
        found: String,
    },

    /// The kiosk web view could not start (address taken, not allowed).
    #[error("cannot serve the web view on {addr}: {reason}")]
    Serve {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },

    /// The camera exists but failed to open or to deliver a frame.
    #[error("camera {index}: {reason}")]
    Camera {
        /// The camera index.
        index: u32,
        /// What the capture backend said.
        reason: String,
    },

    /// A frames folder holds no image files.
    #[error("frames folder {} has no image files (looked for .jpg, .jpeg, .png, .bmp, .ppm, .pgm)", path.display())]
    EmptyFrames {
        /// The folder.
        path: PathBuf,
    },

    /// An image is too small or otherwise unusable for a stage (e.g. alignment of a degenerate face).
    #[error("{0}")]
    Invalid(String),

    /// The model failed while running (should not happen with a validated card).
    #[error("inference failed: {0}")]
    Inference(String),
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The message with its causes, joined by `: ` (what `anyhow`'s `{:#}` prints), for places
    /// that report an error as one string, such as a failed frame's `"error"` field.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_the_file_and_the_cause_once() {
        let e = Error::io(
            "/x/y.jpg",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(e.chain(), "cannot read /x/y.jpg: entity not found");
    }
}
