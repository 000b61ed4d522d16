//! Secrets the daemon learns at run time rather than from the manifests: Notion's one-time
//! verification token. Stored sealed (AES-256-SIV, bound to the integration), in `meta`.

use super::{Error, Store, codec, trees};

const PREFIX: &str = "captured_token/";
const SHOWN_PREFIX: &str = "captured_token_shown/";
const VERIFIED_PREFIX: &str = "signed_delivery_seen/";

impl Store {
    /// Stores an integration's sealed verification token (replacing any earlier one). Does not
    /// flush.
    pub fn put_captured_token(&self, integration: &str, sealed: &str) -> Result<(), Error> {
        self.put(
            &self.meta,
            trees::META,
            &format!("{PREFIX}{integration}"),
            &sealed.to_owned(),
        )
    }

    /// Marks an integration's captured token as shown to an operator (it is shown once), or
    /// not (a new token arrived). Does not flush.
    pub fn set_captured_token_shown(&self, integration: &str, shown: bool) -> Result<(), Error> {
        let key = format!("{SHOWN_PREFIX}{integration}");
        if shown {
            self.put(&self.meta, trees::META, &key, &true)
        } else {
            self.meta
                .remove(key.as_bytes())
                .map(|_| ())
                .map_err(|e| self.storage(e))
        }
    }

    /// Whether an integration's captured token was shown already.
    pub fn captured_token_shown(&self, integration: &str) -> Result<bool, Error> {
        Ok(self
            .get::<bool>(
                &self.meta,
                trees::META,
                &format!("{SHOWN_PREFIX}{integration}"),
            )?
            .unwrap_or(false))
    }

    /// Records that a signed delivery for the integration was verified (the subscription
    /// works). Does not flush.
    pub fn set_signed_delivery_seen(&self, integration: &str) -> Result<(), Error> {
        self.put(
            &self.meta,
            trees::META,
            &format!("{VERIFIED_PREFIX}{integration}"),
            &true,
        )
    }

    /// Whether a signed delivery was ever verified for the integration.
    pub fn signed_delivery_seen(&self, integration: &str) -> Result<bool, Error> {
        Ok(self
            .get::<bool>(
                &self.meta,
                trees::META,
                &format!("{VERIFIED_PREFIX}{integration}"),
            )?
            .unwrap_or(false))
    }

    /// Every captured token: (integration id, sealed value).
    pub fn captured_tokens(&self) -> Result<Vec<(String, String)>, Error> {
        let mut out = Vec::new();
        for item in self.meta.scan_prefix(PREFIX.as_bytes()) {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let sealed: String = codec::decode(trees::META, &k, &v)?;
            let id = String::from_utf8_lossy(&k[PREFIX.len()..]).into_owned();
            out.push((id, sealed));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.captured_tokens().unwrap().is_empty());
        store.put_captured_token("notion-main", "sos1:abc").unwrap();
        store.put_captured_token("notion-main", "sos1:def").unwrap();
        assert!(!store.captured_token_shown("notion-main").unwrap());
        store.set_captured_token_shown("notion-main", true).unwrap();
        assert!(store.captured_token_shown("notion-main").unwrap());
        store
            .set_captured_token_shown("notion-main", false)
            .unwrap();
        assert!(!store.captured_token_shown("notion-main").unwrap());
        assert!(!store.signed_delivery_seen("notion-main").unwrap());
        store.set_signed_delivery_seen("notion-main").unwrap();
        assert!(store.signed_delivery_seen("notion-main").unwrap());
        assert_eq!(
            store.captured_tokens().unwrap(),
            vec![("notion-main".to_owned(), "sos1:def".to_owned())]
        );
    }
}
