//! Watches a legacy scp transfer (`scp -O`, or a remote `scp -t` / `scp -f` run as a command) passing
//! through the SSH proxy and reports each file: its path, its size, which way it went and whether it
//! arrived whole. OpenSSH's scp speaks SFTP by default since 9.0 ([`crate::sftp`]); this covers the old
//! protocol, which older clients and `scp -O` still use.
//!
//! The protocol: the source sends a line per item (`C0644 <size> <name>` for a file, followed by its
//! bytes and a zero byte; `D0755 0 <name>` to enter a directory, `E` to leave it, `T...` for times,
//! `\x01`/`\x02` for warnings and errors); the sink answers each with a status byte, which is not read
//! here. A sans-io parser of hostile bytes: a line is at most [`MAX_LINE`] bytes, directories nest at
//! most [`MAX_DEPTH`] deep, anything else is an error and the caller ends the session.

use sallyport_recordings::{FileTransfer, TransferDirection, TransferProtocol};

use crate::{TransferEvent, WatchError, clean_name};

/// Longest protocol line (OpenSSH's scp uses a 2 KiB buffer for it).
pub const MAX_LINE: usize = 4096;
/// Deepest directory nesting followed.
pub const MAX_DEPTH: usize = 256;

/// What a remote command is, as far as transfers go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScpCommand {
    /// Upload (`-t`: the target is the sink) or download (`-f`: the target is the source).
    pub direction: TransferDirection,
    /// The path scp was given on the target.
    pub path: String,
    /// `-r` or `-d`: the path is a directory the files go into (or come from).
    pub into_directory: bool,
}

/// Splits a command line into words the way a POSIX shell would for plain words and quotes; `None`
/// for anything with expansions or operators (then it is not a plain scp command).
fn words(command: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => word.push(chars.next()?),
                        '$' | '`' => return None,
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next()?);
            }
            ';' | '&' | '|' | '<' | '>' | '$' | '`' | '(' | ')' | '\n' => return None,
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

impl ScpCommand {
    /// Recognizes `scp [-v] [-r] [-d] [-p] (-t | -f) [--] PATH`, the command an scp client runs on the
    /// target; anything else is `None` (an ordinary command).
    pub fn parse(command: &[u8]) -> Option<ScpCommand> {
        let command = std::str::from_utf8(command).ok()?;
        let words = words(command)?;
        let (program, args) = words.split_first()?;
        if program != "scp" && !program.ends_with("/scp") {
            return None;
        }
        let mut direction = None;
        let mut into_directory = false;
        let mut paths = Vec::new();
        let mut options_done = false;
        for arg in args {
            if !options_done && arg == "--" {
                options_done = true;
            } else if !options_done && arg.starts_with('-') && arg.len() > 1 {
                for flag in arg.chars().skip(1) {
                    match flag {
                        't' => direction = Some(TransferDirection::Upload),
                        'f' => direction = Some(TransferDirection::Download),
                        'r' | 'd' => into_directory = true,
                        'v' | 'p' | 'q' | 'O' | 'T' => {}
                        _ => return None,
                    }
                }
            } else {
                paths.push(arg.clone());
            }
        }
        match (direction, paths.as_slice()) {
            (Some(direction), [path]) => Some(ScpCommand {
                direction,
                path: clean_name(path.as_bytes()),
                into_directory,
            }),
            _ => None,
        }
    }
}

/// Where the parser is in the source's stream.
#[derive(Debug)]
enum State {
    /// Reading a protocol line.
    Line(Vec<u8>),
    /// Inside a file's bytes: how many are left.
    File {
        remaining: u64,
        transfer: FileTransfer,
    },
    /// After a file's bytes: the source's status byte.
    FileEnd(FileTransfer),
}

/// Follows one scp channel; fed the source's bytes (the client's for an upload, the target's for a download).
#[derive(Debug)]
pub struct ScpWatch {
    command: ScpCommand,
    directories: Vec<String>,
    state: State,
}

impl ScpWatch {
    /// A watcher for this command.
    pub fn new(command: ScpCommand) -> ScpWatch {
        ScpWatch {
            command,
            directories: Vec::new(),
            state: State::Line(Vec::new()),
        }
    }

    /// Which side is the source: bytes from it go to [`ScpWatch::source_bytes`].
    pub fn direction(&self) -> TransferDirection {
        self.command.direction
    }

    fn error(&self, what: String) -> WatchError {
        WatchError {
            side: match self.command.direction {
                TransferDirection::Upload => "client",
                TransferDirection::Download => "target",
            },
            protocol: "scp",
            what,
        }
    }

    /// The file's path on the target, and the name the protocol carried when it may differ.
    fn place(&self, name: &str) -> (String, String) {
        let base = self.command.path.trim_end_matches('/');
        let base = if base.is_empty() && self.command.path.starts_with('/') {
            "/"
        } else {
            base
        };
        if !self.command.into_directory && self.directories.is_empty() {
            let last = base.rsplit('/').next().unwrap_or(base);
            return match self.command.direction {
                // A download names the file it reads; the path is exact.
                TransferDirection::Download => (self.command.path.clone(), String::new()),
                // An upload may land at the path or inside it (when it is a directory).
                TransferDirection::Upload if last == name => {
                    (self.command.path.clone(), String::new())
                }
                TransferDirection::Upload => (self.command.path.clone(), name.to_owned()),
            };
        }
        let mut path = base.to_owned();
        // A download of a directory names it in its first `D` line: the path already ends with it.
        let skip = usize::from(
            self.command.direction == TransferDirection::Download
                && self.command.into_directory
                && self
                    .directories
                    .first()
                    .is_some_and(|first| base.rsplit('/').next() == Some(first)),
        );
        for directory in self.directories.iter().skip(skip) {
            path.push('/');
            path.push_str(directory);
        }
        path.push('/');
        path.push_str(name);
        (path, String::new())
    }

    /// Bytes from the source, before they are passed on.
    pub fn source_bytes(&mut self, mut bytes: &[u8]) -> Result<Vec<TransferEvent>, WatchError> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            match &mut self.state {
                State::Line(line) => {
                    let end = bytes.iter().position(|&b| b == b'\n');
                    let take = end.map_or(bytes.len(), |at| at + 1);
                    if line.len() + take > MAX_LINE {
                        return Err(
                            self.error(format!("a protocol line longer than {MAX_LINE} bytes"))
                        );
                    }
                    line.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if end.is_some() {
                        let line = std::mem::take(line);
                        self.line(&line)?;
                    }
                }
                State::File {
                    remaining,
                    transfer,
                } => {
                    let take = (*remaining).min(bytes.len() as u64);
                    *remaining -= take;
                    transfer.bytes += take;
                    bytes = &bytes[take as usize..];
                    if *remaining == 0 {
                        let transfer = transfer.clone();
                        self.state = State::FileEnd(transfer);
                    }
                }
                State::FileEnd(transfer) => {
                    let mut transfer = transfer.clone();
                    // Zero: the source read the whole file; anything else is its error message.
                    transfer.complete = bytes[0] == 0;
                    if bytes[0] == 0 {
                        bytes = &bytes[1..];
                        self.state = State::Line(Vec::new());
                    } else {
                        self.state = State::Line(Vec::new());
                    }
                    out.push(TransferEvent::Transfer(transfer));
                }
            }
        }
        Ok(out)
    }

    fn line(&mut self, line: &[u8]) -> Result<(), WatchError> {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        match text.first() {
            Some(b'C') | Some(b'D') => {
                let file = text[0] == b'C';
                let text = std::str::from_utf8(&text[1..])
                    .map_err(|_| self.error("a file line that is not text".into()))?;
                let mut parts = text.splitn(3, ' ');
                let (Some(mode), Some(size), Some(name)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(self.error(format!("a malformed line {:?}", clean_name(line))));
                };
                let size: u64 = size.parse().map_err(|_| {
                    self.error(format!(
                        "a malformed size {:?}",
                        clean_name(size.as_bytes())
                    ))
                })?;
                if mode.len() != 4 || !mode.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                    return Err(self.error(format!(
                        "a malformed mode {:?}",
                        clean_name(mode.as_bytes())
                    )));
                }
                if name.is_empty() || name.contains('/') || name == ".." {
                    return Err(
                        self.error(format!("an unsafe name {:?}", clean_name(name.as_bytes())))
                    );
                }
                let name = clean_name(name.as_bytes());
                if file {
                    let (path, name) = self.place(&name);
                    let transfer = FileTransfer {
                        protocol: TransferProtocol::Scp,
                        direction: self.command.direction,
                        path,
                        name,
                        bytes: 0,
                        complete: false,
                    };
                    self.state = if size == 0 {
                        State::FileEnd(transfer)
                    } else {
                        State::File {
                            remaining: size,
                            transfer,
                        }
                    };
                } else {
                    if self.directories.len() >= MAX_DEPTH {
                        return Err(
                            self.error(format!("directories nested deeper than {MAX_DEPTH}"))
                        );
                    }
                    self.directories.push(name);
                }
            }
            Some(b'E') => {
                self.directories.pop();
            }
            // Times, and the source's warnings and errors: nothing moves.
            Some(b'T') | Some(1) | Some(2) => {}
            _ => return Err(self.error(format!("an unknown line {:?}", clean_name(line)))),
        }
        Ok(())
    }

    /// The channel ended: a file in the middle of its bytes was cut off.
    pub fn finish(&mut self) -> Vec<TransferEvent> {
        match std::mem::replace(&mut self.state, State::Line(Vec::new())) {
            State::File { transfer, .. } | State::FileEnd(transfer) => {
                vec![TransferEvent::Transfer(FileTransfer {
                    complete: false,
                    ..transfer
                })]
            }
            State::Line(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn transfer(
        direction: TransferDirection,
        path: &str,
        name: &str,
        bytes: u64,
        complete: bool,
    ) -> TransferEvent {
        TransferEvent::Transfer(FileTransfer {
            protocol: TransferProtocol::Scp,
            direction,
            path: path.into(),
            name: name.into(),
            bytes,
            complete,
        })
    }

    #[test]
    fn commands_are_recognized() {
        let check = |command: &str, expect: Option<(TransferDirection, &str, bool)>| {
            let parsed = ScpCommand::parse(command.as_bytes());
            let expect = expect.map(|(direction, path, into_directory)| ScpCommand {
                direction,
                path: path.into(),
                into_directory,
            });
            assert_eq!(parsed, expect, "{command}");
        };
        use TransferDirection::{Download, Upload};
        check("scp -t /tmp/x", Some((Upload, "/tmp/x", false)));
        check(
            "scp -v -r -d -t -- '/tmp/a b'",
            Some((Upload, "/tmp/a b", true)),
        );
        check(
            "/usr/bin/scp -pf \"x\\\"y\"",
            Some((Download, "x\"y", false)),
        );
        check(
            "scp -f /etc/hostname",
            Some((Download, "/etc/hostname", false)),
        );
        check("scp -t /tmp/x; rm -rf /", None);
        check("scp -t $HOME", None);
        check("scp /a /b", None);
        check("scp -t", None);
        check("scp -t 'unterminated", None);
        check("echo scp -t /x", None);
        check("scp -Z -t /x", None);
    }

    #[test]
    fn files_and_directories_are_followed_across_splits() {
        let mut watch = ScpWatch::new(ScpCommand::parse(b"scp -r -t /srv").unwrap());
        let stream = [
            &b"D0755 0 tree\n"[..],
            b"T1 0 1 0\n",
            b"C0644 5 a.txt\n",
            b"hello",
            b"\0",
            b"D0700 0 sub\nC0600 0 empty\n\0E\nE\n",
            b"C0644 3 last\nab",
        ]
        .concat();
        let mut events = Vec::new();
        for piece in stream.chunks(3) {
            events.extend(watch.source_bytes(piece).unwrap());
        }
        events.extend(watch.finish());
        use TransferDirection::Upload;
        assert_eq!(
            events,
            vec![
                transfer(Upload, "/srv/tree/a.txt", "", 5, true),
                transfer(Upload, "/srv/tree/sub/empty", "", 0, true),
                transfer(Upload, "/srv/last", "", 2, false),
            ]
        );
    }

    #[test]
    fn single_files_name_the_path_given() {
        let mut up = ScpWatch::new(ScpCommand::parse(b"scp -t /home/u/up.bin").unwrap());
        let events = up.source_bytes(b"C0644 2 payload.bin\nxy\0").unwrap();
        assert_eq!(
            events,
            vec![transfer(
                TransferDirection::Upload,
                "/home/u/up.bin",
                "payload.bin",
                2,
                true
            )]
        );
        let mut down = ScpWatch::new(ScpCommand::parse(b"scp -f /etc/hostname").unwrap());
        let events = down.source_bytes(b"C0644 3 hostname\nab\n\0").unwrap();
        assert_eq!(
            events,
            vec![transfer(
                TransferDirection::Download,
                "/etc/hostname",
                "",
                3,
                true
            )]
        );
        assert_eq!(
            events[0].to_string(),
            "file transfer (scp): download /etc/hostname, 3 bytes"
        );
    }

    #[test]
    fn hostile_streams_are_errors() {
        for stream in [
            &b"X nonsense\n"[..],
            b"C0644 abc name\n",
            b"C06448 1 name\n",
            b"C0644 1 ../../etc/passwd\n",
            b"C0644 1 a/b\n",
            &[b'C'; MAX_LINE + 1],
            b"C0644 1\n",
        ] {
            let mut watch = ScpWatch::new(ScpCommand::parse(b"scp -t /x").unwrap());
            assert!(
                watch.source_bytes(stream).is_err(),
                "{:?}",
                clean_name(stream)
            );
        }
        let mut watch = ScpWatch::new(ScpCommand::parse(b"scp -r -t /x").unwrap());
        let deep = b"D0755 0 d\n".repeat(MAX_DEPTH + 1);
        assert!(
            watch
                .source_bytes(&deep)
                .unwrap_err()
                .what
                .contains("deeper")
        );
    }
}
