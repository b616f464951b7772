//! A printed page to PDF with headless Chromium: the page is written to a
//! temporary directory, the browser runs there with its own throwaway
//! profile, in a process group of its own that is killed whole when the
//! time allowed (`[reports] pdf_timeout_ms`) runs out. The page's own
//! content security policy keeps scripts off (turning them off in the
//! browser, `--blink-settings=scriptEnabled=false`, also stops it printing).

use std::process::Stdio;

use crate::config::ReportSettings;

/// Why no PDF came out.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error(
        "no Chromium to render PDFs: looked for {looked_for}; install Debian's `chromium` or set `[reports] chromium`"
    )]
    Unavailable { looked_for: String },
    #[error("Chromium did not finish the PDF within {seconds} s (`[reports] pdf_timeout_ms`)")]
    Timeout { seconds: u64 },
    #[error("Chromium failed to render the PDF: {0}")]
    Failed(String),
}

impl From<std::io::Error> for PdfError {
    fn from(e: std::io::Error) -> Self {
        PdfError::Failed(e.to_string())
    }
}

/// `html` as a PDF.
pub async fn render(settings: &ReportSettings, html: &str) -> Result<Vec<u8>, PdfError> {
    let browser = settings
        .chromium()
        .map_err(|looked_for| PdfError::Unavailable { looked_for })?;
    let dir = tempfile::tempdir()?;
    let page = dir.path().join("page.html");
    let out = dir.path().join("page.pdf");
    tokio::fs::write(&page, html).await?;
    let mut command = tokio::process::Command::new(&browser);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--print-to-pdf={}", out.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its renderer and GPU processes go with it.
        .process_group(0)
        .kill_on_drop(true);
    let child = command.spawn()?;
    let group = child.id();
    let output = match tokio::time::timeout(settings.pdf_timeout(), child.wait_with_output()).await
    {
        Ok(output) => output?,
        Err(_) => {
            kill_group(group);
            return Err(PdfError::Timeout {
                seconds: settings.pdf_timeout().as_secs(),
            });
        }
    };
    // A browser that exits leaves no helper behind it.
    kill_group(group);
    match tokio::fs::read(&out).await {
        Ok(pdf) if output.status.success() && pdf.starts_with(b"%PDF") => Ok(pdf),
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            Err(PdfError::Failed(format!(
                "{} ({})",
                output.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            )))
        }
    }
}

/// Kills the process group the browser leads, if it still runs.
fn kill_group(group: Option<u32>) {
    if let Some(pid) = group.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: a plain kill(2) of the group this function's caller
        // created (`process_group(0)`: its id is the browser's pid).
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_browser_is_named_with_the_key_to_set() {
        let settings = ReportSettings {
            chromium: Some("/nonexistent/chromium".into()),
            ..ReportSettings::default()
        };
        let e = render(&settings, "<p>x</p>").await.unwrap_err();
        assert!(matches!(e, PdfError::Unavailable { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains("/nonexistent/chromium"), "{text}");
        assert!(text.contains("[reports] chromium"), "{text}");
    }

    #[tokio::test]
    async fn a_browser_that_hangs_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("chromium");
        std::fs::write(&fake, "#!/bin/sh\nsleep 30\n").unwrap();
        let mut perms = std::fs::metadata(&fake).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&fake, perms).unwrap();
        let settings = ReportSettings {
            chromium: Some(fake),
            pdf_timeout_ms: 300,
        };
        let started = std::time::Instant::now();
        let e = render(&settings, "<p>x</p>").await.unwrap_err();
        assert!(matches!(e, PdfError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
