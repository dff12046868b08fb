//! `--serve`: the stack listens on fixed ports until Ctrl-C.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use local_stack::cli::Args;
use local_stack::instructions::{ServeInfo, serve_instructions};
use local_stack::secrets::secret_key_hex;
use local_stack::stack::{INPUT_BUCKET, Stack, StackOptions};

pub async fn serve(
    args: &Args,
    options: StackOptions,
    log_path: &Path,
) -> anyhow::Result<ExitCode> {
    let stack = Stack::start(options).await?;
    let key_hex = secret_key_hex(&stack.receiver_secret)
        .context("the generated receiver secret is not base64")?;
    let info = ServeInfo {
        receiver_url: &stack.receiver_url,
        sender_url: &stack.sender_url,
        sink_url: &stack.sink_url,
        partner_url: &stack.partner_url,
        receiver_secret: &stack.receiver_secret,
        receiver_key_hex: &key_hex,
        data_dir: &stack.data_dir,
        input_bucket: INPUT_BUCKET,
        tenant: &args.tenant,
    };
    println!("{}", serve_instructions(&info));
    println!("Logs: {}", log_path.display());

    enrichment_runtime::server::shutdown_signal().await;
    eprintln!("Stopping: waiting for requests in flight.");
    stack.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
