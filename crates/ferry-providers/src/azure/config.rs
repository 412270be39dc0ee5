//! Where an Azure location is reached: one account URL for object_store and ferry's own requests.

use super::*;
use crate::{ProviderError, Result};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};

/// Azurite's development storage account, published by Microsoft for the emulator (not a secret).
pub(super) const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
pub(super) const EMULATOR_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The account URL every request goes to, decided once from the same settings object_store
/// reads — the endpoint flag, else `AZURE_STORAGE_USE_EMULATOR` with `AZURITE_BLOB_STORAGE_URL`,
/// else `AZURE_STORAGE_ENDPOINT`, else the account's public (or Fabric) endpoint — and handed to
/// object_store as its endpoint, so its requests (listing, delete) and ferry's own block
/// requests cannot disagree. The emulator (by flag or variable) with no account named means
/// Azurite's published development account. Returns the builder set to that URL, the account,
/// the URL, and the endpoint to name in messages (redacted).
pub(super) fn resolve_endpoint(
    builder: MicrosoftAzureBuilder,
    flag: Option<&str>,
) -> Result<(MicrosoftAzureBuilder, String, String, String)> {
    let config = |key: AzureConfigKey| builder.get_config_value(&key).filter(|v| !v.is_empty());
    let truthy =
        |key: AzureConfigKey| config(key).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "on" | "yes" | "y"));
    let named = config(AzureConfigKey::AccountName);
    let emulator = flag.is_none() && truthy(AzureConfigKey::UseEmulator);
    let (account_url, endpoint, development) = match flag {
        Some(ep) => {
            let url = ep.trim_end_matches('/');
            let url =
                if named.is_some() || url.ends_with(EMULATOR_ACCOUNT) { url.to_string() } else { format!("{url}/{EMULATOR_ACCOUNT}") };
            (url, ferry_core::location::redact(ep), named.is_none())
        }
        None if emulator => {
            let base = std::env::var("AZURITE_BLOB_STORAGE_URL").ok().filter(|u| !u.is_empty());
            let base = base.as_deref().unwrap_or("http://127.0.0.1:10000").trim_end_matches('/').to_string();
            let account = named.clone().unwrap_or_else(|| EMULATOR_ACCOUNT.to_string());
            (format!("{base}/{account}"), ferry_core::location::redact(&base), named.is_none())
        }
        None => {
            let account = named.clone().ok_or_else(|| ProviderError::Config {
                provider: PROVIDER,
                detail: "no storage account: set AZURE_STORAGE_ACCOUNT_NAME".into(),
            })?;
            match config(AzureConfigKey::Endpoint) {
                Some(url) => {
                    let endpoint = ferry_core::location::redact(&url);
                    (url.trim_end_matches('/').to_string(), endpoint, false)
                }
                None if truthy(AzureConfigKey::UseFabricEndpoint) => {
                    (format!("https://{account}.blob.fabric.microsoft.com"), "Azure Blob Storage (Fabric)".to_string(), false)
                }
                None => (format!("https://{account}.blob.core.windows.net"), "Azure Blob Storage".to_string(), false),
            }
        }
    };
    let credential_given =
        [AzureConfigKey::AccessKey, AzureConfigKey::SasKey, AzureConfigKey::Token].into_iter().any(|k| config(k).is_some());
    let mut builder = builder.with_use_emulator(false).with_endpoint(account_url.clone());
    let account = match development {
        true => {
            // The emulator's own account, with its published key unless a credential was given
            // (as object_store's emulator mode does).
            builder = builder.with_account(EMULATOR_ACCOUNT);
            if !credential_given {
                builder = builder.with_access_key(EMULATOR_KEY);
            }
            EMULATOR_ACCOUNT.to_string()
        }
        false => named.unwrap_or_else(|| EMULATOR_ACCOUNT.to_string()),
    };
    Ok((builder, account, account_url, endpoint))
}
