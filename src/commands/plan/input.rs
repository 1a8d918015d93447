//! Where `plan` reads findings from: one file, every file of a directory in name order, or
//! standard input. Each is read incrementally by the same splitter and decoder as `render`, so
//! every form `render` takes (NDJSON, a JSON array, concatenated or single EventBridge events,
//! SNS notifications, bare ASFF and OCSF findings, `get-findings` output) works here, one
//! element in memory at a time.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::commands::offline::input_reader;
use crate::finding::Finding;
use crate::finding::stream::Splitter;

/// What [`Input::read`] hands on, in input order.
pub(crate) enum Item {
    /// A finding, or the problem of one that does not decode with where it is (prefixed with
    /// its file for a directory).
    Finding(Result<Arc<Finding>, String>),
    /// The end of one file (or of standard input).
    FileDone,
}

/// The `--findings` argument, resolved.
#[derive(Debug)]
pub(crate) enum Input {
    Stdin,
    File(PathBuf),
    /// The files of a directory, in name order.
    Directory(Vec<PathBuf>),
}

impl Input {
    /// `-` is standard input; a directory stands for every file directly inside it, in name
    /// order, except hidden ones (`.` first: editor and OS litter) and subdirectories. A
    /// directory without any is an error: a plan of nothing would say "no changes".
    pub(crate) fn resolve(arg: &str) -> anyhow::Result<Input> {
        if arg == "-" {
            return Ok(Input::Stdin);
        }
        let path = Path::new(arg);
        let meta = std::fs::metadata(path).with_context(|| format!("reading {arg}"))?;
        if !meta.is_dir() {
            return Ok(Input::File(path.to_owned()));
        }
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).with_context(|| format!("reading {arg}"))? {
            let entry = entry.with_context(|| format!("reading {arg}"))?;
            if entry.file_name().as_encoded_bytes().starts_with(b".") {
                continue;
            }
            let file = entry.path();
            // Follows symbolic links, like opening the file will.
            let is_file = std::fs::metadata(&file)
                .with_context(|| format!("reading {}", file.display()))?
                .is_file();
            if is_file {
                files.push(file);
            }
        }
        if files.is_empty() {
            bail!("{arg} holds no files of findings");
        }
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        Ok(Input::Directory(files))
    }

    /// How many files there are, when that is known in advance (a progress bar over them).
    pub(crate) fn files(&self) -> Option<u64> {
        match self {
            Input::Directory(files) => u64::try_from(files.len()).ok(),
            _ => None,
        }
    }

    /// Reads every finding in input order and hands each to `each`, with an
    /// [`Item::FileDone`] after each file. An `Err` is fatal: a file that cannot be read, or
    /// JSON broken so that the rest cannot be told apart (what also stops `render`).
    pub(crate) fn read(&self, mut each: impl FnMut(Item)) -> anyhow::Result<()> {
        let (sources, named): (Vec<Option<&Path>>, bool) = match self {
            Input::Stdin => (vec![None], false),
            Input::File(path) => (vec![Some(path.as_path())], false),
            Input::Directory(files) => (files.iter().map(|f| Some(f.as_path())).collect(), true),
        };
        for source in sources {
            let name =
                source.map_or_else(|| "standard input".to_owned(), |p| p.display().to_string());
            let prefix = if named {
                format!("{name}: ")
            } else {
                String::new()
            };
            for chunk in Splitter::new(input_reader(source)?) {
                let chunk = chunk.with_context(|| format!("reading {name}"))?;
                for finding in chunk.findings() {
                    each(Item::Finding(
                        finding
                            .map(Arc::new)
                            .map_err(|problem| format!("{prefix}{problem}")),
                    ));
                }
            }
            each(Item::FileDone);
        }
        Ok(())
    }
}
