//! Business context: the organisation's application inventory (`mappings/_context.toml`).
//!
//! A finding alone rarely says how much it matters: a MEDIUM package vulnerability is routine on a
//! build box and urgent on the host that runs card payments. The inventory names the applications
//! that matter, who owns them and how critical they are, and how to recognise their resources.
//! Routing can then filter on `ApplicationName` / `ApplicationCriticality`, templates can show
//! `context.application.{name, owner, criticality}`, and a rule can raise the finding's severity
//! with `severity_override` (which is written back to Security Hub with a note saying why).
//!
//! # Matching
//!
//! A finding belongs to the FIRST application, in file order, that matches ANY of its resources.
//! Each listed matcher is one way to recognise the application, and any one suffices:
//!
//! - `accounts`: the finding's `AwsAccountId`, or the account field of a resource's ARN
//!   (`arn:aws:ec2:us-east-1:444455556666:instance/i-1` is in 444455556666), so a resource shared
//!   into another account still counts;
//! - `resource_prefixes`: a resource id (usually an ARN) that starts with the prefix;
//! - `tags`: a resource carrying one of the listed tags with exactly that value
//!   (`tags = { app = "payments", application = "payments" }` accepts either spelling).
//!
//! Order the file from the most specific application to the broadest (a whole shared account
//! last), because the first match wins. Matching borrows from the finding and never allocates.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::LoadError;
use super::load::FileCtx;
use crate::finding::{Finding, Resource, Severity};

/// The inventory's file name inside the mapping directory. It starts with `_`, so the team-file
/// loader never mistakes it for a team.
pub const CONTEXT_FILE: &str = "_context.toml";

/// How much an application matters to the business. Spelled like the severity labels so a rule
/// can use it directly: `severity_override = "{{ context.application.criticality }}"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Criticality {
    Low,
    Medium,
    High,
    Critical,
}

impl Criticality {
    pub const ALL: [Criticality; 4] = [
        Criticality::Low,
        Criticality::Medium,
        Criticality::High,
        Criticality::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Criticality::Low => "LOW",
            Criticality::Medium => "MEDIUM",
            Criticality::High => "HIGH",
            Criticality::Critical => "CRITICAL",
        }
    }

    /// Parses a label, case-insensitively (`critical` and `CRITICAL` mean the same).
    pub fn parse(label: &str) -> Option<Criticality> {
        Criticality::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(label))
    }

    /// The severity label of the same name, for rules that raise a finding to its application's
    /// criticality.
    pub fn severity(self) -> Severity {
        match self {
            Criticality::Low => Severity::Low,
            Criticality::Medium => Severity::Medium,
            Criticality::High => Severity::High,
            Criticality::Critical => Severity::Critical,
        }
    }
}

impl fmt::Display for Criticality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[applications]]` entry. `name`, `owner` and `criticality` are what templates see as
/// `context.application`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub name: String,
    pub owner: String,
    pub criticality: Criticality,
    /// 12-digit AWS account ids.
    pub accounts: Vec<String>,
    pub resource_prefixes: Vec<String>,
    /// Tag key → required value; a resource matches with any one of these pairs.
    pub tags: BTreeMap<String, String>,
    /// 1-based line of the `[[applications]]` header, so messages can point back at the entry.
    pub line: usize,
}

impl Application {
    /// True when any matcher recognises the finding's account or any of its resources.
    pub fn matches(&self, finding: &Finding) -> bool {
        self.has_account(&finding.account_id)
            || finding.resources.iter().any(|r| self.matches_resource(r))
    }

    fn matches_resource(&self, resource: &Resource) -> bool {
        arn_account(&resource.id).is_some_and(|account| self.has_account(account))
            || self
                .resource_prefixes
                .iter()
                .any(|prefix| resource.id.starts_with(prefix.as_str()))
            || self
                .tags
                .iter()
                .any(|(key, value)| resource.tags.get(key) == Some(value))
    }

    fn has_account(&self, account: &str) -> bool {
        self.accounts.iter().any(|a| a == account)
    }
}

/// The account field of an ARN (`arn:partition:service:region:account:resource`); `None` for ids
/// that are not ARNs and for ARNs without an account (S3 buckets).
fn arn_account(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("arn:")?;
    rest.split(':').nth(3).filter(|a| !a.is_empty())
}

/// Every application of the organisation, in file order. Empty when the mapping directory has no
/// `_context.toml`, in which case no finding has an application.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub applications: Vec<Application>,
    /// Where the inventory was read from; `None` when there is none.
    pub file: Option<PathBuf>,
}

impl Inventory {
    /// The application the finding belongs to: the first, in file order, that matches it.
    pub fn application_for(&self, finding: &Finding) -> Option<&Application> {
        self.applications.iter().find(|a| a.matches(finding))
    }

    /// An application by name.
    pub fn get(&self, name: &str) -> Option<&Application> {
        self.applications.iter().find(|a| a.name == name)
    }

    pub fn len(&self) -> usize {
        self.applications.len()
    }

    pub fn is_empty(&self) -> bool {
        self.applications.is_empty()
    }

    /// Parses and validates inventory text; `path` is only used in error messages. Every problem
    /// is reported, each as `file:line: what is wrong`.
    pub fn parse(path: &Path, src: &str) -> Result<Inventory, Vec<LoadError>> {
        let mut parser = Parser {
            ctx: FileCtx::new(path, src),
            errors: Vec::new(),
        };
        let applications = parser.document();
        if parser.errors.is_empty() {
            Ok(Inventory {
                applications,
                file: Some(path.to_path_buf()),
            })
        } else {
            parser.errors.sort_by_key(|e| e.line);
            Err(parser.errors)
        }
    }

    /// Reads `dir/_context.toml`. No file means an empty inventory, not an error: business
    /// context is optional.
    pub fn load(dir: &Path) -> Result<Inventory, Vec<LoadError>> {
        let path = dir.join(CONTEXT_FILE);
        if !path.exists() {
            return Ok(Inventory::default());
        }
        match std::fs::read_to_string(&path) {
            Ok(src) => Inventory::parse(&path, &src),
            Err(e) => Err(vec![LoadError {
                file: path,
                line: None,
                message: format!("cannot read: {e}"),
            }]),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TOML form
// ---------------------------------------------------------------------------------------------

type Texts = Spanned<Vec<Spanned<String>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplicationRaw {
    name: Spanned<String>,
    owner: Spanned<String>,
    criticality: Spanned<String>,
    accounts: Option<Texts>,
    resource_prefixes: Option<Texts>,
    tags: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
}

struct Parser<'a> {
    ctx: FileCtx<'a>,
    errors: Vec<LoadError>,
}

impl Parser<'_> {
    fn error(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(LoadError {
            file: self.ctx.path.to_path_buf(),
            line: Some(line),
            message: message.into(),
        });
    }

    fn error_at(&mut self, offset: usize, message: impl Into<String>) {
        let line = self.ctx.line(offset);
        self.error(line, message);
    }

    fn document(&mut self) -> Vec<Application> {
        let (doc, syntax_errors) = DeTable::parse_recoverable(self.ctx.src);
        // Later syntax errors are almost always echoes of the first one.
        if let Some(e) = syntax_errors.first() {
            let line = e.span().map_or(1, |s| self.ctx.line(s.start));
            self.error(line, format!("TOML syntax error: {}", e.message()));
            return Vec::new();
        }
        let mut applications = Vec::new();
        for (key, value) in doc.get_ref().iter() {
            let key_name: &str = key.get_ref();
            if key_name != "applications" {
                self.error_at(
                    key.span().start,
                    format!(
                        "unknown key `{key_name}`; the inventory holds only `[[applications]]` \
                         entries"
                    ),
                );
                continue;
            }
            let DeValue::Array(items) = value.get_ref() else {
                self.error_at(
                    value.span().start,
                    format!(
                        "`applications` must be an array of tables (`[[applications]]`), not {}",
                        value.get_ref().type_str()
                    ),
                );
                continue;
            };
            let mut names: BTreeMap<String, usize> = BTreeMap::new();
            for (position, item) in items.iter().enumerate() {
                let line = self.ctx.line(item.span().start);
                let at = format!("applications[{position}]");
                let raw = match ApplicationRaw::deserialize(ValueDeserializer::from(item.clone())) {
                    Ok(raw) => raw,
                    Err(e) => {
                        let offset = e.span().map_or(item.span().start, |s| s.start);
                        let detail = e.to_string().trim().replace('\n', "; ");
                        self.error_at(offset, format!("{at}: {detail}"));
                        continue;
                    }
                };
                if let Some(app) = self.application(&at, line, raw, &mut names) {
                    applications.push(app);
                }
            }
        }
        applications
    }

    fn application(
        &mut self,
        at: &str,
        line: usize,
        raw: ApplicationRaw,
        names: &mut BTreeMap<String, usize>,
    ) -> Option<Application> {
        let errors_before = self.errors.len();
        let name = raw.name.get_ref().trim().to_owned();
        if name.is_empty() {
            self.error_at(
                raw.name.span().start,
                format!("{at}: `name` must not be empty"),
            );
        } else if let Some(first) = names.get(&name) {
            let msg = format!(
                "{at}: application `{name}` is already defined at line {first}; names must be \
                 unique"
            );
            self.error_at(raw.name.span().start, msg);
        } else {
            names.insert(name.clone(), line);
        }
        let what = if name.is_empty() {
            at.to_owned()
        } else {
            format!("{at} (`{name}`)")
        };

        let owner = raw.owner.get_ref().trim().to_owned();
        if owner.is_empty() {
            self.error_at(
                raw.owner.span().start,
                format!("{what}: `owner` must not be empty"),
            );
        }

        let criticality = Criticality::parse(raw.criticality.get_ref().trim());
        if criticality.is_none() {
            self.error_at(
                raw.criticality.span().start,
                format!(
                    "{what}: criticality {:?} is not one of LOW, MEDIUM, HIGH, CRITICAL",
                    raw.criticality.get_ref()
                ),
            );
        }

        // Judged on what was written, so invalid matchers are not echoed as "no matchers".
        let written = raw
            .accounts
            .as_ref()
            .is_some_and(|a| !a.get_ref().is_empty())
            || raw
                .resource_prefixes
                .as_ref()
                .is_some_and(|p| !p.get_ref().is_empty())
            || raw.tags.as_ref().is_some_and(|t| !t.get_ref().is_empty());
        let accounts = self.texts(&what, "accounts", raw.accounts, |a| {
            (a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
                .then_some("is not a 12-digit AWS account id")
        });
        let resource_prefixes =
            self.texts(&what, "resource_prefixes", raw.resource_prefixes, |p| {
                // An empty prefix would claim every resource of every account.
                p.is_empty()
                    .then_some("is empty, which would match every resource")
            });
        let mut tags = BTreeMap::new();
        if let Some(table) = raw.tags {
            for (key, value) in table.into_inner() {
                if key.trim().is_empty() {
                    self.error_at(
                        value.span().start,
                        format!("{what}: tags: a tag key must not be empty"),
                    );
                    continue;
                }
                tags.insert(key, value.into_inner());
            }
        }
        if !written {
            self.error(
                line,
                format!(
                    "{what}: nothing identifies this application; set at least one of \
                     `accounts`, `resource_prefixes`, `tags`"
                ),
            );
        }

        if self.errors.len() > errors_before {
            return None;
        }
        Some(Application {
            name,
            owner,
            criticality: criticality?,
            accounts,
            resource_prefixes,
            tags,
            line,
        })
    }

    /// A list of matcher strings; `invalid` says why one value cannot be used.
    fn texts(
        &mut self,
        what: &str,
        key: &str,
        raw: Option<Texts>,
        invalid: impl Fn(&str) -> Option<&'static str>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for item in raw.map(Spanned::into_inner).unwrap_or_default() {
            let value = item.get_ref().trim();
            if let Some(reason) = invalid(value) {
                self.error_at(
                    item.span().start,
                    format!("{what}: {key}: {:?} {reason}", item.get_ref()),
                );
                continue;
            }
            out.push(value.to_owned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_accounts() {
        assert_eq!(
            arn_account("arn:aws:ec2:us-east-1:444455556666:instance/i-1"),
            Some("444455556666")
        );
        assert_eq!(arn_account("arn:aws:s3:::bucket"), None);
        assert_eq!(arn_account("AWS::::Account:444455556666"), None);
        assert_eq!(arn_account("arn:aws"), None);
    }

    #[test]
    fn criticality_labels() {
        assert_eq!(Criticality::parse("critical"), Some(Criticality::Critical));
        assert_eq!(Criticality::parse("INFORMATIONAL"), None);
        assert_eq!(Criticality::High.severity(), Severity::High);
        assert_eq!(Criticality::Low.to_string(), "LOW");
    }
}
