//! False positives: an [`AllowList`] of exact objects (their SHA-256) and of signature names an
//! operator has judged harmless, each entry with the reason written beside it. The router turns
//! a detection they cover into clean, logged with the entry, and the outbound message says so
//! (`allowed_by`). The binary reads the list from a file or an S3 object and reloads it without
//! a restart; the pipeline reads the latest through an [`AllowListHandle`].
//!
//! ```text
//! # one entry per line; a comment after `#` on every entry says why
//! sha256 275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f  # INC-1234: our installer
//! signature Win.Test.EICAR_HDB-1  # the QA team uploads EICAR on purpose
//! ```
//!
//! A signature that says the object was not scanned whole (clamd's `Heuristics.Limits.*` and
//! `Heuristics.Encrypted.*`, the archive guard's `Avscan.*`) cannot be ignored by name: that
//! would pass unscanned content. Allow the exact object by its SHA-256 instead.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use crate::model::{ScanOutcome, Verdict};

/// Signatures that mean "not scanned whole", never "a false positive".
const NOT_SCANNED: [&str; 3] = ["Heuristics.Limits.", "Heuristics.Encrypted.", "Avscan."];

/// The entries in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    /// SHA-256 (lowercase hex) → why.
    sha256: HashMap<String, String>,
    /// Signature name → why.
    signatures: HashMap<String, String>,
}

impl AllowList {
    /// Reads a list; `Err` names every mistake, one per line (with its line number).
    pub fn parse(text: &str) -> Result<AllowList, Vec<String>> {
        let mut list = AllowList::default();
        let mut mistakes = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let number = number + 1;
            let (entry, comment) = match line.split_once('#') {
                Some((entry, comment)) => (entry.trim(), comment.trim()),
                None => (line.trim(), ""),
            };
            if entry.is_empty() {
                continue;
            }
            if comment.is_empty() {
                mistakes.push(format!(
                    "line {number}: no comment after `#` saying why this is allowed"
                ));
                continue;
            }
            let mut words = entry.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("sha256"), Some(hex), None) => {
                    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        list.sha256.insert(hex.to_ascii_lowercase(), comment.to_owned());
                    } else {
                        mistakes.push(format!("line {number}: {hex:?} is not a SHA-256 (64 hex digits)"));
                    }
                }
                (Some("signature"), Some(name), None) => {
                    if NOT_SCANNED.iter().any(|prefix| name.starts_with(prefix)) {
                        mistakes.push(format!(
                            "line {number}: {name} says the object was not scanned whole, not that it is harmless: allow its sha256 instead"
                        ));
                    } else {
                        list.signatures.insert(name.to_owned(), comment.to_owned());
                    }
                }
                _ => mistakes.push(format!(
                    "line {number}: expected `sha256 <hex>` or `signature <name>`, then `# why`"
                )),
            }
        }
        if mistakes.is_empty() {
            Ok(list)
        } else {
            Err(mistakes)
        }
    }

    /// Entries in force.
    pub fn len(&self) -> usize {
        self.sha256.len() + self.signatures.len()
    }

    /// Whether the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry that allows an object judged as `outcome`, described for logs and messages:
    /// its SHA-256 (whatever the verdict), or an infected verdict's signature.
    pub fn allowance(&self, outcome: &ScanOutcome) -> Option<String> {
        if outcome.verdict == Verdict::Clean {
            return None;
        }
        if let Some(why) = outcome.sha256.as_ref().and_then(|sha256| self.sha256.get(sha256)) {
            return Some(format!(
                "sha256 {} ({why})",
                outcome.sha256.as_deref().unwrap_or_default()
            ));
        }
        match &outcome.verdict {
            Verdict::Infected { signature } => self
                .signatures
                .get(signature)
                .map(|why| format!("signature {signature} ({why})")),
            _ => None,
        }
    }
}

/// The latest list, shared by the pipeline; the binary replaces it on reload.
#[derive(Debug, Clone)]
pub struct AllowListHandle {
    current: watch::Receiver<Arc<AllowList>>,
}

/// Replaces the list behind its handles.
#[derive(Debug)]
pub struct AllowListControl {
    current: watch::Sender<Arc<AllowList>>,
}

impl AllowListHandle {
    /// A handle and its control, starting with `list`.
    pub fn new(list: AllowList) -> (AllowListControl, AllowListHandle) {
        let (current, receiver) = watch::channel(Arc::new(list));
        (AllowListControl { current }, AllowListHandle { current: receiver })
    }

    /// An empty list nobody replaces (actor tests, benches).
    pub fn empty() -> Self {
        Self::new(AllowList::default()).1
    }

    /// The list in force now.
    pub fn current(&self) -> Arc<AllowList> {
        Arc::clone(&self.current.borrow())
    }
}

impl AllowListControl {
    /// Puts `list` in force.
    pub fn replace(&self, list: AllowList) {
        self.current.send_replace(Arc::new(list));
    }

    /// A handle that follows this control.
    pub fn handle(&self) -> AllowListHandle {
        AllowListHandle {
            current: self.current.subscribe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::QuarantineReason;

    const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

    fn outcome(verdict: Verdict, sha256: Option<&str>) -> ScanOutcome {
        ScanOutcome {
            verdict,
            engine: None,
            definitions: None,
            sha256: sha256.map(str::to_owned),
            allowed_by: None,
        }
    }

    #[test]
    fn entries_allow_exact_objects_and_named_signatures_only() {
        let list = AllowList::parse(&format!(
            "# the QA team's list\n\nsha256 {}  # INC-1: our installer\nsignature Win.Test.EICAR_HDB-1 # QA uploads EICAR\n",
            EICAR_SHA256.to_ascii_uppercase()
        ))
        .unwrap();
        assert_eq!(list.len(), 2);
        let other = "0".repeat(64);
        let unscannable = Verdict::Unscannable {
            reason: QuarantineReason::Unscannable,
            signature: Some("Avscan.Archive.Encrypted".into()),
        };
        // By digest, whatever the verdict: the operator vouched for these exact bytes.
        assert_eq!(
            list.allowance(&outcome(unscannable.clone(), Some(EICAR_SHA256))),
            Some(format!("sha256 {EICAR_SHA256} (INC-1: our installer)"))
        );
        assert_eq!(list.allowance(&outcome(unscannable, Some(&other))), None);
        // By signature, an infected verdict only.
        let eicar = Verdict::Infected {
            signature: "Win.Test.EICAR_HDB-1".into(),
        };
        assert_eq!(
            list.allowance(&outcome(eicar, Some(&other))).as_deref(),
            Some("signature Win.Test.EICAR_HDB-1 (QA uploads EICAR)")
        );
        let virus = Verdict::Infected {
            signature: "Win.Trojan.Real".into(),
        };
        assert_eq!(list.allowance(&outcome(virus, None)), None);
        assert_eq!(list.allowance(&outcome(Verdict::Clean, Some(EICAR_SHA256))), None);
    }

    #[test]
    fn every_mistake_is_a_line_and_not_scanned_signatures_cannot_be_ignored() {
        let mistakes = AllowList::parse(
            "sha256 abc # short\nsignature Eicar\nsignature Heuristics.Limits.Exceeded.MaxFileSize # too big\nallow everything # please\nsignature Avscan.Archive.TooDeep # deep\n",
        )
        .unwrap_err();
        assert_eq!(mistakes.len(), 5, "{mistakes:#?}");
        assert!(mistakes[0].starts_with("line 1: \"abc\" is not a SHA-256"));
        assert!(mistakes[1].starts_with("line 2: no comment"));
        assert!(mistakes[2]
            .starts_with("line 3: Heuristics.Limits.Exceeded.MaxFileSize says the object was not scanned whole"));
        assert!(mistakes[3].starts_with("line 4: expected"));
        assert!(mistakes[4].starts_with("line 5: Avscan.Archive.TooDeep"));
    }

    #[test]
    fn a_handle_sees_the_list_its_control_put_in_force() {
        let (control, handle) = AllowListHandle::new(AllowList::default());
        assert!(handle.current().is_empty());
        control.replace(AllowList::parse("signature X # why").unwrap());
        assert_eq!(handle.current().len(), 1);
        assert_eq!(control.handle().current().len(), 1);
    }
}
