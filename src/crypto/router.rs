//! Routes each stored data key to the provider that wrapped it, so a database can hold
//! keys of several providers at once (during a local → aws migration, say), while new
//! data keys always come from the active provider.
use std::sync::Arc;

use async_trait::async_trait;

use super::{DataKey, EncryptionContext, GeneratedKey, KeyError, KeyProvider, WrappedKey};

pub struct KeyRouter {
    active: Arc<dyn KeyProvider>,
    /// Providers that can only unwrap (old keys not yet rotated away).
    others: Vec<Arc<dyn KeyProvider>>,
}

impl KeyRouter {
    pub fn new(active: Arc<dyn KeyProvider>, others: Vec<Arc<dyn KeyProvider>>) -> Self {
        Self { active, others }
    }

    fn owner(&self, key_id: &str) -> Option<&Arc<dyn KeyProvider>> {
        std::iter::once(&self.active)
            .chain(&self.others)
            .find(|p| p.owns_key(key_id))
    }
}

#[async_trait]
impl KeyProvider for KeyRouter {
    fn kind(&self) -> &'static str {
        self.active.kind()
    }

    fn active_key_id(&self) -> &str {
        self.active.active_key_id()
    }

    fn owns_key(&self, key_id: &str) -> bool {
        self.owner(key_id).is_some()
    }

    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<GeneratedKey, KeyError> {
        self.active.generate_data_key(context).await
    }

    async fn wrap_data_key(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KeyError> {
        self.active.wrap_data_key(key, context).await
    }

    async fn decrypt_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KeyError> {
        match self.owner(&wrapped.key_id) {
            Some(provider) => provider.decrypt_data_key(wrapped, context).await,
            None => Err(KeyError::Provider(format!(
                "no configured key provider can unwrap data keys of {}",
                wrapped.key_id
            ))),
        }
    }

    async fn health(&self) -> Result<(), KeyError> {
        self.active.health().await
    }
}
