//! False positives: an [`AllowList`] of exact objects (their SHA-256) an operator has judged
//! harmless, each entry with the reason written beside it. The router turns a detection of such
//! an object into clean, logged with the entry, and the outbound message says so
//! (`allowed_by`). The binary reads the list from a file or an S3 object and reloads it without
//! a restart; the pipeline reads the latest through an [`AllowListHandle`].
//!
//! ```text
//! # one entry per line; a comment after `#` on every entry says why
//! sha256 275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f  # INC-1234: our installer
//! ```
//!
//! Signatures cannot be allowed by name here. clamd reports a stream's first match only, and
//! holds back its "not scanned whole" alerts when a signature matched, so a detection says
//! nothing of the rest of the object: a zip holding EICAR first and real malware second answers
//! EICAR. Ignoring the name after the fact would pass the rest unscanned. A signature is
//! ignored where clamd goes on scanning past it: an `.ign2` file in clamd's database directory
//! (README, False positives).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use crate::model::{ScanOutcome, Verdict};

/// The entries in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    /// SHA-256 (lowercase hex) → why.
    sha256: HashMap<String, String>,
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
                (Some("signature"), Some(name), None) => mistakes.push(format!(
                    "line {number}: signature {name}: clamd reports a stream's first match only, so ignoring it here would pass whatever else the object holds unscanned; ignore it in clamd (an .ign2 file in its database directory) or allow the object's sha256"
                )),
                _ => mistakes.push(format!("line {number}: expected `sha256 <hex>`, then `# why`")),
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
        self.sha256.len()
    }

    /// Whether the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry that allows a detection in an object judged as `outcome` (by its SHA-256: the
    /// operator vouched for these exact bytes), described for logs and messages. Only a
    /// detection: an unscannable object was not scanned whole, and no entry makes it so.
    pub fn allowance(&self, outcome: &ScanOutcome) -> Option<String> {
        if !matches!(outcome.verdict, Verdict::Infected { .. }) {
            return None;
        }
        let sha256 = outcome.sha256.as_ref()?;
        self.sha256.get(sha256).map(|why| format!("sha256 {sha256} ({why})"))
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
    fn entries_allow_exact_objects_only() {
        let list = AllowList::parse(&format!(
            "# the QA team's list\n\nsha256 {}  # INC-1: our installer\n",
            EICAR_SHA256.to_ascii_uppercase()
        ))
        .unwrap();
        assert_eq!(list.len(), 1);
        let other = "0".repeat(64);
        let unscannable = Verdict::Unscannable {
            reason: QuarantineReason::Unscannable,
            signature: Some("Avscan.Archive.Encrypted".into()),
        };
        // A detection only: what was not scanned whole stays unscannable whatever its digest.
        assert_eq!(list.allowance(&outcome(unscannable, Some(EICAR_SHA256))), None);
        let eicar = Verdict::Infected {
            signature: "Win.Test.EICAR_HDB-1".into(),
        };
        assert_eq!(list.allowance(&outcome(eicar.clone(), Some(&other))), None);
        assert_eq!(
            list.allowance(&outcome(eicar, None)),
            None,
            "no digest (too large): never allowed"
        );
        assert_eq!(list.allowance(&outcome(Verdict::Clean, Some(EICAR_SHA256))), None);
    }

    #[test]
    fn every_mistake_is_a_line_and_signatures_are_refused() {
        let mistakes = AllowList::parse(&format!(
            "sha256 abc # short\nsha256 {EICAR_SHA256}\nsignature Win.Test.EICAR_HDB-1 # QA uploads EICAR\nallow everything # please\n"
        ))
        .unwrap_err();
        assert_eq!(mistakes.len(), 4, "{mistakes:#?}");
        assert!(mistakes[0].starts_with("line 1: \"abc\" is not a SHA-256"));
        assert!(mistakes[1].starts_with("line 2: no comment"));
        assert!(mistakes[2]
            .starts_with("line 3: signature Win.Test.EICAR_HDB-1: clamd reports a stream's first match only"));
        assert!(mistakes[3].starts_with("line 4: expected"));
    }

    #[test]
    fn a_handle_sees_the_list_its_control_put_in_force() {
        let (control, handle) = AllowListHandle::new(AllowList::default());
        assert!(handle.current().is_empty());
        control.replace(AllowList::parse(&format!("sha256 {EICAR_SHA256} # why")).unwrap());
        assert_eq!(handle.current().len(), 1);
        assert_eq!(control.handle().current().len(), 1);
    }
}
