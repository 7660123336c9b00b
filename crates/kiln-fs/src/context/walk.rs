//! Walks one matched COPY source in a fixed order (names sorted bytewise,
//! parents before children), skipping what `.dockerignore` and `--exclude`
//! hide. Both the content hash and the copy use this walk, so they see
//! exactly the same files.
//!
//! Everything below the matched source is opened relative to its parent
//! directory's fd with `O_NOFOLLOW`: symlinks inside a copied directory are
//! entries, never followed.
//!
//! Names are bytes, as Linux has them: a name that is not UTF-8 is walked,
//! hashed and copied byte-exact (Docker copies such files too).
//!
//! A visitor that can [`Visitor::fork`] has a big directory's children
//! walked in runs on all cores (rayon), each run by a fork, and gets the
//! forks back with [`Visitor::join`] in walk order: what it sees does not
//! depend on the number of threads.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{openat, readlinkat, statat, AtFlags, FileType, Mode, OFlags, Stat};

use super::ignore::PathFilter;
use super::source::{join_bytes, read_names, Matched, SourceError, SourceRoot};

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink(OsString),
    /// Character/block device, fifo or socket (`FileType` and `rdev`).
    Special(FileType, u64),
}

/// One entry of the walk.
pub struct Entry<'a> {
    /// Path relative to the matched source (bytes: a name need not be
    /// UTF-8); empty for the source itself.
    pub rel: &'a [u8],
    pub stat: &'a Stat,
    pub kind: &'a Kind,
    /// Where to open it: the object itself (`O_PATH`), or a name in a dir.
    pub at: At<'a>,
}

#[derive(Clone, Copy)]
pub enum At<'a> {
    Fd(BorrowedFd<'a>),
    Child(BorrowedFd<'a>, &'a OsStr),
}

impl At<'_> {
    /// Opens a regular file for reading without following symlinks.
    pub fn open_read(&self) -> io::Result<OwnedFd> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        Ok(match *self {
            At::Fd(fd) => openat(fd, ".", flags, Mode::empty()).or_else(|_| reopen(fd, flags))?,
            At::Child(dir, name) => openat(dir, name, flags, Mode::empty())?,
        })
    }
}

/// Reopens an `O_PATH` fd with real access flags through `/proc/self/fd`.
fn reopen(fd: BorrowedFd<'_>, flags: OFlags) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
    Ok(openat(
        rustix::fs::CWD,
        p.as_str(),
        flags & !OFlags::NOFOLLOW,
        Mode::empty(),
    )?)
}

pub trait Visitor: Send {
    /// Called for every included entry, a directory before its children.
    fn entry(&mut self, e: &Entry<'_>) -> Result<(), SourceError>;
    /// Called after a directory's children.
    fn leave_dir(&mut self, e: &Entry<'_>) -> Result<(), SourceError>;
    /// A visitor for a run of entries walked on another thread, handed
    /// back to [`Self::join`] in walk order; `None` (the default): the
    /// whole walk is on the caller's thread.
    fn fork(&self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }
    /// Takes back a fork that has visited the entries that come next.
    fn join(&mut self, _fork: Self) -> Result<(), SourceError>
    where
        Self: Sized,
    {
        Ok(())
    }
}

/// Children of one directory visited by one fork: big enough that a fork
/// costs little against its run, small enough to spread a directory of a
/// few hundred entries over the cores.
const RUN: usize = 16;

pub fn kind_of(stat: &Stat, at: At<'_>) -> io::Result<Kind> {
    let ft = FileType::from_raw_mode(stat.st_mode);
    Ok(match ft {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => {
            let t = match at {
                At::Fd(fd) => readlinkat(fd, "", Vec::new())?,
                At::Child(dir, name) => readlinkat(dir, name, Vec::new())?,
            };
            Kind::Symlink(OsStr::from_bytes(t.as_bytes()).to_os_string())
        }
        other => Kind::Special(other, stat.st_rdev),
    })
}

struct Walker<'a, V> {
    root: &'a SourceRoot,
    source_path: &'a str,
    exclude: Option<&'a PathFilter>,
    visitor: &'a mut V,
}

/// Walks `m` (a result of [`SourceRoot::expand`]).
pub fn walk<V: Visitor>(
    root: &SourceRoot,
    m: &Matched,
    exclude: Option<&PathFilter>,
    visitor: &mut V,
) -> Result<(), SourceError> {
    let io = |e: io::Error| SourceError::Io {
        path: m.path.clone(),
        root: root.path().to_path_buf(),
        source: e,
    };
    let at = At::Fd(m.fd.as_fd());
    let kind = kind_of(&m.stat, at).map_err(io)?;
    // A top-level file is matched against --exclude by its base name.
    if kind != Kind::Dir && exclude.is_some_and(|f| f.excludes(m.base_name().as_bytes())) {
        return Ok(());
    }
    let entry = Entry {
        rel: b"",
        stat: &m.stat,
        kind: &kind,
        at,
    };
    visitor.entry(&entry)?;
    if kind == Kind::Dir {
        let dir = openat(
            &m.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io(e.into()))?;
        let mut w = Walker {
            root,
            source_path: &m.path,
            exclude,
            visitor,
        };
        let mut pending = Vec::new();
        w.children(dir.as_fd(), b"", &mut pending)?;
        w.visitor.leave_dir(&entry)?;
    }
    Ok(())
}

/// A directory excluded by a pattern but walked because a `!` exception may
/// re-include something below it; emitted only if something is.
struct Pending {
    rel: Vec<u8>,
    stat: Stat,
    parent: OwnedFd,
    name: OsString,
}

impl<V: Visitor> Walker<'_, V> {
    fn err(&self, rel: &[u8], e: io::Error) -> SourceError {
        SourceError::Io {
            path: kiln_oci::escape_bytes(&join_bytes(self.source_path.as_bytes(), rel)),
            root: self.root.path().to_path_buf(),
            source: e,
        }
    }

    /// Whether the entry is hidden, and whether it may still hold included
    /// entries (an excluded dir that a `!` exception may reach into).
    fn hidden(&self, rel: &[u8]) -> (bool, bool) {
        let mut hidden = false;
        let mut skip = false;
        if let Some(ig) = self.root.ignore() {
            let ctx_rel = join_bytes(self.source_path.as_bytes(), rel);
            if ig.excludes(&ctx_rel) {
                hidden = true;
                skip |= ig.skips_dir(&ctx_rel);
            }
        }
        if let Some(ex) = self.exclude {
            if ex.excludes(rel) {
                hidden = true;
                skip |= ex.skips_dir(rel);
            }
        }
        (hidden, hidden && !skip)
    }

    /// Emits excluded ancestors that turn out to hold an included entry.
    fn flush(&mut self, pending: &mut [(Pending, bool)]) -> Result<(), SourceError> {
        for (p, emitted) in pending.iter_mut() {
            if !*emitted {
                *emitted = true;
                let kind = Kind::Dir;
                self.visitor.entry(&Entry {
                    rel: &p.rel,
                    stat: &p.stat,
                    kind: &kind,
                    at: At::Child(p.parent.as_fd(), &p.name),
                })?;
            }
        }
        Ok(())
    }

    fn children(
        &mut self,
        dir: BorrowedFd<'_>,
        rel: &[u8],
        pending: &mut Vec<(Pending, bool)>,
    ) -> Result<(), SourceError> {
        let mut names = read_names(dir).map_err(|e| self.err(rel, e))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        // Inside an excluded directory the pending ancestors are emitted
        // by whichever entry comes first: that walk stays on one thread.
        if pending.is_empty() && names.len() > RUN && self.visitor.fork().is_some() {
            return self.children_in_runs(dir, rel, &names);
        }
        for name in &names {
            self.child(dir, rel, name, pending)?;
        }
        Ok(())
    }

    /// Visits `names` (children of `dir`, sorted) in runs of [`RUN`], each
    /// by a fork of the visitor on the rayon pool, joined in order. A
    /// window of runs at a time, so the forks' results held at once stay a
    /// part of the tree.
    fn children_in_runs(
        &mut self,
        dir: BorrowedFd<'_>,
        rel: &[u8],
        names: &[OsString],
    ) -> Result<(), SourceError> {
        use rayon::prelude::*;
        let window = RUN * 4 * rayon::current_num_threads();
        for part in names.chunks(window) {
            let forks: Vec<V> = part
                .chunks(RUN)
                .map(|_| self.visitor.fork().expect("the visitor forked before"))
                .collect();
            let (root, source_path, exclude) = (self.root, self.source_path, self.exclude);
            let visited: Vec<Result<V, SourceError>> = part
                .par_chunks(RUN)
                .zip(forks)
                .map(|(run, mut fork)| {
                    let mut w = Walker {
                        root,
                        source_path,
                        exclude,
                        visitor: &mut fork,
                    };
                    for name in run {
                        w.child(dir, rel, name, &mut Vec::new())?;
                    }
                    Ok(fork)
                })
                .collect();
            for fork in visited {
                self.visitor.join(fork?)?;
            }
        }
        Ok(())
    }

    /// Visits child `name` of `dir` (at `rel`) and what is below it.
    fn child(
        &mut self,
        dir: BorrowedFd<'_>,
        rel: &[u8],
        name: &OsStr,
        pending: &mut Vec<(Pending, bool)>,
    ) -> Result<(), SourceError> {
        let child_rel = join_bytes(rel, name.as_bytes());
        let (hidden, walk_anyway) = self.hidden(&child_rel);
        if hidden && !walk_anyway {
            return Ok(());
        }
        let stat = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.err(&child_rel, e.into()))?;
        let at = At::Child(dir, name);
        let kind = kind_of(&stat, at).map_err(|e| self.err(&child_rel, e))?;
        if hidden {
            if kind != Kind::Dir {
                return Ok(());
            }
            let sub = self.open_dir(dir, name, &child_rel)?;
            let parent = rustix::io::dup(dir).map_err(|e| self.err(rel, e.into()))?;
            pending.push((
                Pending {
                    rel: child_rel.clone(),
                    stat,
                    parent,
                    name: name.to_os_string(),
                },
                false,
            ));
            self.children(sub.as_fd(), &child_rel, pending)?;
            let (p, emitted) = pending.pop().expect("pushed above");
            if emitted {
                let kind = Kind::Dir;
                self.visitor.leave_dir(&Entry {
                    rel: &p.rel,
                    stat: &p.stat,
                    kind: &kind,
                    at: At::Child(p.parent.as_fd(), &p.name),
                })?;
            }
            return Ok(());
        }
        self.flush(pending)?;
        let entry = Entry {
            rel: &child_rel,
            stat: &stat,
            kind: &kind,
            at,
        };
        self.visitor.entry(&entry)?;
        if kind == Kind::Dir {
            let sub = self.open_dir(dir, name, &child_rel)?;
            // Included directories are emitted already; only excluded
            // ancestors below this point may be pending.
            let mut inner = Vec::new();
            self.children(sub.as_fd(), &child_rel, &mut inner)?;
            self.visitor.leave_dir(&entry)?;
        }
        Ok(())
    }

    fn open_dir(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        rel: &[u8],
    ) -> Result<OwnedFd, SourceError> {
        openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err(rel, e.into()))
    }
}
