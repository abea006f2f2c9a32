//! `tokenauth report`: key hygiene findings for a cron job, failing on the kinds named.

use anyhow::bail;

use crate::admin::{FINDINGS, Finding, Report, ReportQuery};
use crate::clock::{self, rfc3339};
use crate::cmd::Ctx;
use crate::output::{self, or_dash};

/// Report keys and personal access tokens that need attention.
///
/// Lists active keys and tokens that expire within 30 days (--expiring-within), that were
/// not used for 90 days (--unused-for; one never used counts from its issue), that have
/// write scope and no IP range, the users who may impersonate others, and disabled users that
/// still hold active keys or tokens. With --fail-on, exits 1 when any finding of the named
/// kinds exists: put it in a cron job or a CI schedule.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  tokenauth report
  tokenauth report --json
  tokenauth report --fail-on expiring,unused,write-without-ip-range
  tokenauth report --expiring-within 14d --fail-on expiring")]
pub struct Args {
    /// Exit 1 when findings of these kinds exist (comma-separated): expiring, unused,
    /// write-without-ip-range, impersonate, disabled-with-keys
    #[arg(long, value_name = "KINDS", value_delimiter = ',',
          value_parser = clap::builder::PossibleValuesParser::new(FINDINGS))]
    pub fail_on: Vec<String>,

    /// What counts as expiring soon
    #[arg(long, default_value = "30d", value_name = "DURATION", value_parser = clock::parse_duration)]
    pub expiring_within: i64,

    /// What counts as unused
    #[arg(long, default_value = "90d", value_name = "DURATION", value_parser = clock::parse_duration)]
    pub unused_for: i64,

    #[command(flatten)]
    pub table: output::TableArgs,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let report = ctx.admin()?.report(&ReportQuery {
        expiring_within: args.expiring_within,
        unused_for: args.unused_for,
    })?;
    if args.table.json {
        output::print_json(&report)?;
    } else {
        print_report(&report, &args.table);
    }
    let failed: Vec<String> = args
        .fail_on
        .iter()
        .filter(|k| report.count(k) > 0)
        .map(|k| format!("{k} ({})", report.count(k)))
        .collect();
    if !failed.is_empty() {
        bail!("the report has findings: {}", failed.join(", "));
    }
    Ok(())
}

fn print_findings(args: &output::TableArgs, title: &str, findings: &[Finding]) {
    println!("{title}: {}", findings.len());
    if findings.is_empty() {
        return;
    }
    let mut t = args.table(&[
        "KIND",
        "ID",
        "USER",
        "TITLE",
        "SCOPE",
        "EXPIRES",
        "LAST USED",
    ]);
    t.wrap(&["TITLE"]);
    for f in findings {
        t.add_row(vec![
            f.kind.clone(),
            t.id(&f.id),
            f.user.clone(),
            or_dash(Some(f.title.clone())),
            f.scope.to_string(),
            or_dash(f.expires.map(rfc3339)),
            f.last_used.map_or_else(|| "never".to_owned(), rfc3339),
        ]);
    }
    output::print_table(&t);
    println!();
}

fn print_report(r: &Report, args: &output::TableArgs) {
    print_findings(
        args,
        &format!(
            "Expiring within {}",
            clock::human_duration(r.expiring_within)
        ),
        &r.expiring,
    );
    print_findings(
        args,
        &format!("Unused for {}", clock::human_duration(r.unused_for)),
        &r.unused,
    );
    print_findings(
        args,
        "Write scope without an IP range",
        &r.write_without_ip_range,
    );
    println!(
        "Users who may impersonate: {}",
        if r.impersonate.is_empty() {
            "none".to_owned()
        } else {
            output::terminal_safe(&r.impersonate.join(", ")).into_owned()
        }
    );
    println!();
    print_findings(
        args,
        "Disabled users' active keys and tokens",
        &r.disabled_with_keys,
    );
}
