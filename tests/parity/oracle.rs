//! The Go oracle (tests/parity/oracle/main.go) as a child process: one JSON line out, one back.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

/// Where a prebuilt oracle can be named instead of building one.
const ORACLE_VARIABLE: &str = "PULLSECRET_INJECTOR_PARITY_ORACLE";

pub struct Oracle {
    child: Child,
    stdin: Option<BufWriter<ChildStdin>>,
    stdout: BufReader<ChildStdout>,
    line: String,
}

/// The versions the oracle was built from, as its build information records them.
#[derive(Debug, serde::Deserialize)]
pub struct About {
    pub go: String,
    pub kubernetes: String,
    pub reference: String,
}

impl Oracle {
    /// Starts the oracle, building it first (or finding it in the cache) with
    /// tests/parity/oracle/build.sh unless `PULLSECRET_INJECTOR_PARITY_ORACLE` names one.
    pub fn start() -> Result<Oracle, String> {
        let binary = match std::env::var_os(ORACLE_VARIABLE) {
            Some(path) => PathBuf::from(path),
            None => build()?,
        };
        let mut child = Command::new(&binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the oracle {}: {e}", binary.display()))?;
        let stdin = child.stdin.take().map(BufWriter::new);
        let stdout = child.stdout.take().map(BufReader::new);
        let stdout = stdout.ok_or("the oracle has no stdout")?;
        Ok(Oracle {
            child,
            stdin,
            stdout,
            line: String::new(),
        })
    }

    /// Sends one case of `target` and reads the answer. The oracle answering nothing (it
    /// died) or something unreadable ends the run: there is nothing left to compare with.
    pub fn ask<T: DeserializeOwned>(&mut self, target: &str, case: &impl Serialize) -> T {
        let request = json!({ "target": target, "case": case });
        let stdin = self
            .stdin
            .as_mut()
            .expect("the oracle's stdin is open until drop");
        let sent = serde_json::to_writer(&mut *stdin, &request)
            .map_err(std::io::Error::from)
            .and_then(|()| stdin.write_all(b"\n"))
            .and_then(|()| stdin.flush());
        self.line.clear();
        let read = sent.and_then(|()| self.stdout.read_line(&mut self.line));
        match read {
            Ok(n) if n > 0 => serde_json::from_str(&self.line).unwrap_or_else(|e| {
                panic!("unreadable oracle answer {:?}: {e}", self.line.trim_end())
            }),
            Ok(_) => panic!("the oracle exited (see its message above)"),
            Err(e) => panic!("talking to the oracle: {e}"),
        }
    }

    pub fn about(&mut self) -> About {
        self.ask("about", &json!({}))
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        // End of input is the oracle's signal to exit.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

fn build() -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity/oracle/build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!("{} failed ({})", script.display(), output.status));
    }
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Ok(PathBuf::from(path))
}
