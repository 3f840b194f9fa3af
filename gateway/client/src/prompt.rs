//! Questions on the terminal: visible answers from standard input, secrets from the terminal without
//! echo.

use std::io::{BufRead, Write};

use anyhow::{Context, Result, bail};

/// Asks for a line; the answer is shown as typed.
pub fn line(question: &str) -> Result<String> {
    eprint!("{question}");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading your answer")?;
    if read == 0 {
        bail!("no answer (standard input is closed)");
    }
    Ok(answer.trim_end_matches(['\r', '\n']).to_owned())
}

/// Asks for a secret without echoing it.
pub fn secret(question: &str) -> Result<String> {
    rpassword::prompt_password(question).context("reading a password from the terminal")
}

/// Asks a yes/no question; only `y` or `yes` is yes.
pub fn confirm(question: &str) -> Result<bool> {
    let answer = line(question)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
