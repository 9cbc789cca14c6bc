//! PEM files of TLS material, read the same way by every binary that
//! serves or dials TLS.

use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Every certificate in a PEM file; an error naming the file when it cannot
/// be read or holds none.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_empty_or_foreign_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        // (file, contents: `None` leaves it missing, the error names)
        let cases = [
            ("missing.pem", None, "missing.pem"),
            ("empty.pem", Some(""), "empty.pem: no certificate found"),
            ("key.pem", Some(key), "key.pem: no certificate found"),
        ];
        for (name, contents, error) in cases {
            let path = dir.path().join(name);
            if let Some(contents) = contents {
                std::fs::write(&path, contents).unwrap();
            }
            let err = certificates(&path).unwrap_err();
            assert!(err.contains(error), "{name}: {err}");
        }
    }
}
