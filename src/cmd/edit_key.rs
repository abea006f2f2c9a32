//! `tokenauth edit-key`: change a key's title, IP ranges or allowed origins.

use anyhow::bail;

use crate::admin::EditKey;
use crate::cmd::Ctx;
use crate::iprange;
use crate::output::terminal_safe;

/// Change a key's title, IP ranges or allowed browser origins.
///
/// IP range and origin changes take effect at once, on tokens already issued with the key
/// too.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth edit-key 6dQx1b0z --ip-range 10.1.0.0/16
  tokenauth edit-key 6dQx1b0z --title 'nightly build' --no-ip-range
  tokenauth edit-key 6dQx1b0z --origin https://app.example.com --origin https://admin.example.com")]
pub struct Args {
    /// The key's id (or a unique prefix of at least 4 characters)
    #[arg(allow_hyphen_values = true)]
    pub key_id: String,

    /// A new title
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,

    /// New IP ranges, comma-separated IPs or CIDR networks
    #[arg(long, value_name = "RANGES", conflicts_with = "no_ip_range")]
    pub ip_range: Option<String>,

    /// Remove the IP restriction: the key works from anywhere
    #[arg(long)]
    pub no_ip_range: bool,

    /// Browser origins whose pages may use the key's tokens from another site, replacing
    /// the current list (repeatable)
    #[arg(long, value_name = "ORIGIN", conflicts_with = "no_origin")]
    pub origin: Vec<String>,

    /// Remove every allowed origin: only same-site callers and non-browser clients
    #[arg(long)]
    pub no_origin: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    if args.title.is_none()
        && args.ip_range.is_none()
        && !args.no_ip_range
        && args.origin.is_empty()
        && !args.no_origin
    {
        bail!(
            "nothing to change; pass --title, --ip-range, --no-ip-range, --origin or --no-origin"
        );
    }
    let origins = match (args.origin.is_empty(), args.no_origin) {
        (false, _) => Some(crate::cmd::parse_origins(&args.origin)?),
        (true, true) => Some(Vec::new()),
        (true, false) => None,
    };
    let ranges = super::ip_range_change(args.ip_range.as_deref(), args.no_ip_range)?;
    let key = ctx
        .admin()?
        .edit_key(
            &args.key_id,
            &EditKey {
                title: args.title.clone(),
                ip_range: ranges.map(|r| iprange::format(&r)),
                origins,
            },
        )?
        .key;
    eprintln!(
        "Updated key {}: title '{}', IP ranges {}, origins {}.",
        terminal_safe(&key.key_id),
        terminal_safe(&key.title),
        if key.ip_ranges.is_empty() {
            "anywhere".to_owned()
        } else {
            iprange::format(&key.ip_ranges)
        },
        if key.origins.is_empty() {
            "none (same site only)".to_owned()
        } else {
            key.origins.join(" ")
        }
    );
    Ok(())
}
