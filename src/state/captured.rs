//! Secrets the daemon learns at run time rather than from the manifests: Notion's one-time
//! verification token. Stored sealed (AES-256-SIV, bound to the integration), in `meta`.

use super::{Error, Store, codec, trees};

const PREFIX: &str = "captured_token/";

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
        assert_eq!(
            store.captured_tokens().unwrap(),
            vec![("notion-main".to_owned(), "sos1:def".to_owned())]
        );
    }
}
