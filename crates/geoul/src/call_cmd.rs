//! `geoul call SERVICE 'JSON' [--key K]`: call any service by name from the
//! command line, with the request and the reply as JSON.
//!
//! Owns: the flags and printing the reply. Does not own: routing, failover
//! or the JSON form of a service's types (serde's, on the serving node).

use anyhow::Context;
use geoul_client::CallOptions;

use crate::cli::CallArgs;
use crate::cluster_client::{connect_client, load_secret, one_line, targets};
use crate::Failure;

pub fn run(args: CallArgs) -> Result<(), Failure> {
    serde_json::from_str::<serde_json::Value>(&args.request)
        .map_err(|e| Failure::Usage(format!("request: not JSON: {e}")))?;
    let targets = targets(&args.cluster)?;
    let secret = load_secret(&args.cluster)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let reply = runtime.block_on(async {
        let client = connect_client(&targets, &secret).await?;
        let service = client.service(&args.service);
        let options = CallOptions {
            timeout: Some(args.timeout),
            idempotent: args.idempotent,
            idempotency_key: args.idempotency_key.map(String::into_bytes),
        };
        service
            .call_json(
                args.key.as_deref().map(str::as_bytes),
                &args.request,
                options,
            )
            .await
            .map_err(|e| Failure::Runtime(one_line(&e.to_string())))
    })?;
    println!("{reply}");
    Ok(())
}
