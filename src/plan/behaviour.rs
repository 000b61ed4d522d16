//! The behavioural plan (`plan --base REV --replay CORPUS`): every recorded event of a corpus
//! replayed against two revisions of the manifests, offline, and what differs — per rule the
//! events matched before and after, per action the actions added, removed and changed (with a
//! few concrete examples), the events that now trigger nothing, the rendering failures the new
//! revision would hit, the conditions that decide on a pseudonymised or scrubbed value
//! (approximate), and whether the replay of the base revision agrees with what the daemon
//! recorded doing (the fidelity check).
//!
//! Each event goes through [`crate::manifest::produce`] — the same normalisation, selection and
//! rendering as the daemon and `supportopsd test` — once per revision, with one context for
//! both (normalisation depends on the platform, not on the rules). Rules are looked up in a
//! per-revision [`Index`] by (integration, event). Events stream in chunks through a few
//! worker threads; each keeps only counts and the first few examples (by corpus position, so
//! the report is the same whatever the threads did), so memory is bounded whatever the
//! corpus's size.
//!
//! Secrets never: rendered parameters come from templates over the (pseudonymised) event, and
//! every value under a credential-named key ([`secrets::is_credential_name`]) is shown as
//! `[redacted]`, as the daemon's traces show them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, mpsc};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::event::corpus::{self, Record};
use crate::event::pseudonym::{StandIn, stand_in_value};
use crate::manifest::produce::{self, Index};
use crate::manifest::select;
use crate::manifest::{IntegrationId, ManifestSet, Rule};
use crate::platforms::PlatformKind;
use crate::rules::path::FieldPath;
use crate::secrets;

/// Examples kept per kind of difference.
pub const EXAMPLES: usize = 3;

/// Longest string shown in an example (longer ones are cut, with their length).
const MAX_SHOWN: usize = 200;

/// Events per chunk handed to a worker.
const CHUNK: usize = 256;

/// A count and the first few examples (in corpus order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Counted<T> {
    /// How many.
    pub count: u64,
    /// Up to [`EXAMPLES`] of them, the earliest in the corpus first.
    pub examples: Vec<T>,
}

impl<T> Default for Counted<T> {
    fn default() -> Self {
        Self {
            count: 0,
            examples: Vec::new(),
        }
    }
}

/// One corpus replayed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CorpusInfo {
    /// The file or folder given to `--replay`.
    pub source: String,
    /// `corpus` (an `events export` file) or `tests` (the rule tests' cases).
    pub kind: &'static str,
    /// Its events.
    pub events: u64,
    /// Ticket text was scrubbed when it was exported (conditions on text see the stand-in).
    pub scrub_text: bool,
}

/// An event that does not normalise as the event it says it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotNormalised {
    /// The event's id.
    pub event: String,
    /// Its integration.
    pub integration: String,
    /// Its event name.
    pub name: String,
    /// Why.
    pub error: String,
}

/// A corpus line that is not a recorded delivery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unreadable {
    /// The corpus.
    pub source: String,
    /// What is wrong (with the line).
    pub error: String,
}

/// Events of an integration (or an event) a revision does not know.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unknown {
    /// `base` or `desired`.
    pub revision: &'static str,
    /// The integration.
    pub integration: String,
    /// The event, when the integration is known but its platform has no such event.
    pub event: Option<String>,
    /// Why.
    pub reason: String,
    /// Events.
    pub count: u64,
}

/// An action's rendered parameters on one event, before → after (only the parameters that
/// differ, for a change).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamExample {
    /// The event's id.
    pub event: String,
    /// Before (absent for an added action).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// After (absent for a removed action).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// One action of a rule: the rule's `occurrence`-th action named `action` on `integration`
/// (so removing one action does not make the others look changed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionBehaviour {
    /// The integration that performs it.
    pub integration: String,
    /// The action.
    pub action: String,
    /// 0 for the rule's first action of that name on that integration, 1 for the second…
    pub occurrence: usize,
    /// Events it was performed on before.
    pub before: u64,
    /// Events it would be performed on after.
    pub after: u64,
    /// Events where it is performed now and was not before.
    pub added: Counted<ParamExample>,
    /// Events where it was performed and is not now.
    pub removed: Counted<ParamExample>,
    /// Events where it is performed both times with different parameters.
    pub changed: Counted<ParamExample>,
}

/// What a rule does on the corpus, before and after.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleBehaviour {
    /// The rule.
    pub rule: String,
    /// `added` (only in the desired revision), `removed` (only in the base) or `kept`.
    pub status: &'static str,
    /// Events it matched with the base revision.
    pub matched_before: u64,
    /// Events it matches with the desired revision.
    pub matched_after: u64,
    /// Whether anything differs (matches, actions, failures).
    pub changed: bool,
    /// Its actions, where one was performed or differs.
    pub actions: Vec<ActionBehaviour>,
}

/// An event that triggered rules before and triggers none now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silenced {
    /// The event's id.
    pub event: String,
    /// The rules it triggered before.
    pub rules_before: Vec<String>,
}

/// An action that fails to render on recorded events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderFailure {
    /// The rule.
    pub rule: String,
    /// The action's integration.
    pub integration: String,
    /// The action.
    pub action: String,
    /// Which of the rule's actions of that name.
    pub occurrence: usize,
    /// The template's error.
    pub error: String,
    /// Events it fails on.
    pub count: u64,
    /// The first few of them.
    pub events: Vec<String>,
}

/// A rule whose condition reads a value that is a pseudonymisation stand-in on some events:
/// its matches there are approximate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approximate {
    /// The rule.
    pub rule: String,
    /// The field its conditions read.
    pub field: String,
    /// What the field held.
    pub stand_in: StandIn,
    /// Events where it held one.
    pub events: u64,
}

/// An event whose replay with the base revision matched other rules than the daemon recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disagreement {
    /// The event's id.
    pub event: String,
    /// The rules the daemon recorded matching.
    pub recorded: Vec<String>,
    /// The rules the replay matched.
    pub replayed: Vec<String>,
}

/// The fidelity check: events recorded with the base revision's commit, replayed with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fidelity {
    /// The base revision's commit.
    pub revision: String,
    /// Events the daemon handled with it.
    pub compared: u64,
    /// Those whose replay matched other rules than the daemon did.
    pub differ: Counted<Disagreement>,
}

/// Totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Rules whose behaviour differs.
    pub rules_changed: usize,
    /// Actions performed now and not before (events × actions).
    pub actions_added: u64,
    /// Actions performed before and not now.
    pub actions_removed: u64,
    /// Actions performed both times, with other parameters.
    pub actions_changed: u64,
    /// Action renderings that fail with the desired revision.
    pub render_errors: u64,
}

/// The behavioural plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Behaviour {
    /// What was replayed.
    pub corpora: Vec<CorpusInfo>,
    /// Events replayed.
    pub events: u64,
    /// Totals.
    pub summary: Summary,
    /// Every rule that matched an event with either revision, in id order.
    pub rules: Vec<RuleBehaviour>,
    /// Events that triggered rules before and trigger none now.
    pub silenced: Counted<Silenced>,
    /// Events that triggered nothing before and trigger rules now.
    pub newly_triggering: u64,
    /// Renderings the desired revision fails: errors.
    pub errors: Vec<RenderFailure>,
    /// Renderings the base revision already fails.
    pub already_failing: Vec<RenderFailure>,
    /// Conditions deciding on pseudonymised or scrubbed values.
    pub approximate: Vec<Approximate>,
    /// Events that do not normalise as the event they say they are.
    pub not_normalised: Counted<NotNormalised>,
    /// Corpus lines that are not recorded deliveries.
    pub unreadable: Counted<Unreadable>,
    /// Events exported before the daemon's enrichment step fetched what it needed (the
    /// record's `enrichment_pending`): rules reading the enriched fields see nothing there.
    pub enrichment_pending: u64,
    /// Integrations and events of the corpus a revision does not know.
    pub unknown: Vec<Unknown>,
    /// The replay of the base revision against what the daemon recorded, when the corpus
    /// holds events the daemon handled with the base revision's commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fidelity: Option<Fidelity>,
}

impl Behaviour {
    /// Whether any event behaves differently.
    pub fn has_changes(&self) -> bool {
        self.summary.rules_changed > 0 || self.silenced.count > 0 || self.newly_triggering > 0
    }
}

/// One event to replay, with its position (for the choice of examples) and its corpus.
#[derive(Debug)]
pub struct Input {
    /// Position in the replay (0, 1, …).
    pub seq: u64,
    /// The event, or why its line is not one.
    pub record: Result<Pending, String>,
    /// Index into the corpora ([`replay`]'s `corpora`).
    pub corpus: usize,
}

/// An event as it is handed to a worker: parsed already, or a corpus line the worker parses
/// (so that parsing, the bulk of reading a corpus, runs on every worker).
#[derive(Debug)]
pub enum Pending {
    /// A delivery.
    Record(Box<Record>),
    /// A corpus line (1-based number, text).
    Line(usize, String),
}

// === engine ===

/// One revision, ready to replay: its rules indexed, each rule's condition paths.
struct Side<'s> {
    set: &'s ManifestSet,
    index: Index<'s>,
    paths: HashMap<&'s str, Vec<&'s FieldPath>>,
}

impl<'s> Side<'s> {
    fn new(set: &'s ManifestSet) -> Self {
        let paths = set
            .rules
            .values()
            .filter(|r| r.enabled)
            .filter_map(|r| {
                let c = r.trigger.condition.as_ref()?;
                let mut p = c.paths();
                p.sort();
                p.dedup();
                Some((r.id.as_str(), p))
            })
            .collect();
        Side {
            set,
            index: Index::new(set),
            paths,
        }
    }
}

/// An action's identity within a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ActionKey<'s> {
    integration: &'s str,
    action: &'static str,
    occurrence: usize,
}

fn keys<'s>(rule: &'s Rule) -> Vec<ActionKey<'s>> {
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    rule.actions
        .iter()
        .map(|a| {
            let n = seen
                .entry((a.integration.as_str(), a.action.name))
                .or_default();
            let k = ActionKey {
                integration: a.integration.as_str(),
                action: a.action.name,
                occurrence: *n,
            };
            *n += 1;
            k
        })
        .collect()
}

/// Examples by corpus position: the earliest [`EXAMPLES`].
#[derive(Debug)]
struct Picks<T> {
    count: u64,
    kept: Vec<(u64, T)>,
}

impl<T> Default for Picks<T> {
    fn default() -> Self {
        Self {
            count: 0,
            kept: Vec::new(),
        }
    }
}

impl<T> Picks<T> {
    fn add(&mut self, seq: u64, make: impl FnOnce() -> T) {
        self.count += 1;
        if self.kept.len() < EXAMPLES {
            self.kept.push((seq, make()));
            self.kept.sort_by_key(|(s, _)| *s);
        } else if self.kept.last().is_some_and(|(s, _)| seq < *s) {
            self.kept.pop();
            self.kept.push((seq, make()));
            self.kept.sort_by_key(|(s, _)| *s);
        }
    }

    fn merge(&mut self, other: Picks<T>) {
        self.count += other.count;
        self.kept.extend(other.kept);
        self.kept.sort_by_key(|(s, _)| *s);
        self.kept.truncate(EXAMPLES);
    }

    fn done(self) -> Counted<T> {
        Counted {
            count: self.count,
            examples: self.kept.into_iter().map(|(_, t)| t).collect(),
        }
    }
}

#[derive(Debug, Default)]
struct ActionAcc {
    before: u64,
    after: u64,
    added: Picks<ParamExample>,
    removed: Picks<ParamExample>,
    changed: Picks<ParamExample>,
}

#[derive(Debug, Default)]
struct RuleAcc<'s> {
    matched_before: u64,
    matched_after: u64,
    actions: HashMap<ActionKey<'s>, ActionAcc>,
}

type FailureKey<'s> = (&'s str, ActionKey<'s>, String);

/// What one worker saw.
#[derive(Debug, Default)]
struct Acc<'s> {
    events: u64,
    per_corpus: HashMap<usize, u64>,
    rules: HashMap<&'s str, RuleAcc<'s>>,
    silenced: Picks<Silenced>,
    newly: u64,
    errors: HashMap<FailureKey<'s>, Picks<String>>,
    already: HashMap<FailureKey<'s>, Picks<String>>,
    approximate: HashMap<(&'s str, String), (StandIn, u64)>,
    not_normalised: Picks<NotNormalised>,
    unreadable: Picks<Unreadable>,
    enrichment_pending: u64,
    unknown: HashMap<(&'static str, String, Option<String>, String), u64>,
    compared: u64,
    differ: Picks<Disagreement>,
}

impl<'s> Acc<'s> {
    fn merge(&mut self, o: Acc<'s>) {
        self.events += o.events;
        for (k, n) in o.per_corpus {
            *self.per_corpus.entry(k).or_default() += n;
        }
        for (id, r) in o.rules {
            let mine = self.rules.entry(id).or_default();
            mine.matched_before += r.matched_before;
            mine.matched_after += r.matched_after;
            for (k, a) in r.actions {
                let m = mine.actions.entry(k).or_default();
                m.before += a.before;
                m.after += a.after;
                m.added.merge(a.added);
                m.removed.merge(a.removed);
                m.changed.merge(a.changed);
            }
        }
        self.silenced.merge(o.silenced);
        self.newly += o.newly;
        for (k, p) in o.errors {
            self.errors.entry(k).or_default().merge(p);
        }
        for (k, p) in o.already {
            self.already.entry(k).or_default().merge(p);
        }
        for (k, (kind, n)) in o.approximate {
            self.approximate.entry(k).or_insert((kind, 0)).1 += n;
        }
        self.not_normalised.merge(o.not_normalised);
        self.unreadable.merge(o.unreadable);
        self.enrichment_pending += o.enrichment_pending;
        for (k, n) in o.unknown {
            *self.unknown.entry(k).or_default() += n;
        }
        self.compared += o.compared;
        self.differ.merge(o.differ);
    }
}

/// What one revision did with one event: each matched rule with its renderings.
type Outcome<'s> = Vec<(&'s Rule, Vec<Result<Value, String>>)>;

struct Replayer<'s> {
    base: Side<'s>,
    desired: Side<'s>,
    base_commit: Option<&'s str>,
    corpora: &'s [(String, &'static str)],
}

impl<'s> Replayer<'s> {
    /// Whether `side` knows the event's integration as one of `platform`; counts it when not.
    fn known(
        &self,
        side: &Side<'s>,
        name: &'static str,
        r: &Record,
        platform: PlatformKind,
        acc: &mut Acc<'s>,
    ) -> bool {
        let reason = match side.set.integrations.get(r.integration.as_str()) {
            None => "no such integration".to_owned(),
            Some(i) if i.platform != platform => format!(
                "it is a {} integration, the events are {}'s",
                i.platform.as_str(),
                platform.as_str()
            ),
            Some(_) => return true,
        };
        *acc.unknown
            .entry((name, r.integration.clone(), None, reason))
            .or_default() += 1;
        false
    }

    fn run_side(
        side: &Side<'s>,
        d: &select::Delivery<'_>,
        integration: &str,
        event: &str,
        ctx: &mut Value,
    ) -> Outcome<'s> {
        let mut out = Vec::new();
        for rule in side.index.rules(integration, event) {
            if !select::triggers(rule, d, &*ctx) {
                continue;
            }
            // A shadow rule matches, but nothing of it runs: no action to compare.
            if rule.is_shadow() {
                out.push((*rule, Vec::new()));
                continue;
            }
            let (rendered, error) = rule.render_offline_in(ctx);
            let actions = rendered
                .into_iter()
                .map(|a| Ok(a.parameters))
                .chain(error.map(|(_, e)| Err(e.to_string())))
                .collect();
            out.push((*rule, actions));
        }
        out
    }

    fn approximate(
        side: &Side<'s>,
        integration: &str,
        event: &str,
        ctx: &Value,
        seen: &mut BTreeMap<(&'s str, String), StandIn>,
    ) {
        for rule in side.index.rules(integration, event) {
            let Some(paths) = side.paths.get(rule.id.as_str()) else {
                continue;
            };
            for p in paths {
                if let Some(kind) = p.lookup(ctx).and_then(stand_in_value) {
                    seen.entry((rule.id.as_str(), p.to_string()))
                        .or_insert(kind);
                }
            }
        }
    }

    fn event(&self, seq: u64, corpus: usize, r: &Record, acc: &mut Acc<'s>) {
        acc.events += 1;
        *acc.per_corpus.entry(corpus).or_default() += 1;
        if r.enrichment_pending {
            acc.enrichment_pending += 1;
        }
        let fail = |acc: &mut Acc<'s>, error: String| {
            acc.not_normalised.add(seq, || NotNormalised {
                event: r.id.clone(),
                integration: r.integration.clone(),
                name: r.event.clone(),
                error,
            });
        };
        let Some(platform) = PlatformKind::parse(&r.platform) else {
            return fail(acc, format!("unknown platform `{}`", r.platform));
        };
        let Some(spec) = platform.descriptor().event(&r.event) else {
            for name in ["base", "desired"] {
                *acc.unknown
                    .entry((
                        name,
                        r.integration.clone(),
                        Some(r.event.clone()),
                        format!("{} has no such event", platform.as_str()),
                    ))
                    .or_default() += 1;
            }
            return;
        };
        let Ok(integration) = IntegrationId::parse(&r.integration) else {
            return fail(acc, format!("`{}` is not an integration id", r.integration));
        };
        let in_base = self.known(&self.base, "base", r, platform, acc);
        let in_desired = self.known(&self.desired, "desired", r, platform, acc);
        let mut ctx = match produce::context_of(platform, &integration, spec, &r.payload) {
            Ok(ctx) => ctx,
            Err(e) => return fail(acc, e),
        };
        let d = produce::delivery(platform, &integration, spec.name, &r.payload);
        let i = integration.as_str();
        let before = if in_base {
            Self::run_side(&self.base, &d, i, spec.name, &mut ctx)
        } else {
            Vec::new()
        };
        let after = if in_desired {
            Self::run_side(&self.desired, &d, i, spec.name, &mut ctx)
        } else {
            Vec::new()
        };
        let mut seen = BTreeMap::new();
        if in_base {
            Self::approximate(&self.base, i, spec.name, &ctx, &mut seen);
        }
        if in_desired {
            Self::approximate(&self.desired, i, spec.name, &ctx, &mut seen);
        }
        for (k, kind) in seen {
            acc.approximate.entry(k).or_insert((kind, 0)).1 += 1;
        }
        // The fidelity check.
        if let (Some(commit), Some(rev)) = (self.base_commit, &r.revision)
            && commit == rev
        {
            acc.compared += 1;
            let recorded: BTreeSet<&str> = r.rules.iter().map(String::as_str).collect();
            let replayed: BTreeSet<&str> = before.iter().map(|(r, _)| r.id.as_str()).collect();
            if recorded != replayed {
                acc.differ.add(seq, || Disagreement {
                    event: r.id.clone(),
                    recorded: recorded.iter().map(|s| (*s).to_owned()).collect(),
                    replayed: replayed.iter().map(|s| (*s).to_owned()).collect(),
                });
            }
        }
        match (before.is_empty(), after.is_empty()) {
            (false, true) => acc.silenced.add(seq, || Silenced {
                event: r.id.clone(),
                rules_before: before.iter().map(|(r, _)| r.id.to_string()).collect(),
            }),
            (true, false) => acc.newly += 1,
            _ => {}
        }
        Self::compare(seq, &r.id, &before, &after, acc);
    }

    /// Counts each rule's matches and each action's differences between two outcomes.
    fn compare(seq: u64, id: &str, before: &Outcome<'s>, after: &Outcome<'s>, acc: &mut Acc<'s>) {
        // Each side's performed actions by (rule, key): Ok parameters; failures counted apart.
        type Performed<'s, 'o> = HashMap<(&'s str, ActionKey<'s>), &'o Value>;
        type Failed<'s> = Vec<(&'s str, ActionKey<'s>)>;
        fn side<'s, 'o>(
            seq: u64,
            id: &str,
            outcome: &'o Outcome<'s>,
            failures: &mut HashMap<FailureKey<'s>, Picks<String>>,
        ) -> (Performed<'s, 'o>, Failed<'s>) {
            let mut out = HashMap::new();
            let mut failed = Vec::new();
            for (rule, rendered) in outcome {
                for (key, result) in keys(rule).into_iter().zip(rendered) {
                    match result {
                        Ok(v) => {
                            out.insert((rule.id.as_str(), key), v);
                        }
                        Err(e) => {
                            failed.push((rule.id.as_str(), key));
                            failures
                                .entry((rule.id.as_str(), key, e.clone()))
                                .or_default()
                                .add(seq, || id.to_owned());
                        }
                    }
                }
            }
            (out, failed)
        }
        for (rule, _) in before {
            acc.rules
                .entry(rule.id.as_str())
                .or_default()
                .matched_before += 1;
        }
        for (rule, _) in after {
            acc.rules.entry(rule.id.as_str()).or_default().matched_after += 1;
        }
        let (b, b_failed) = side(seq, id, before, &mut acc.already);
        let (a, a_failed) = side(seq, id, after, &mut acc.errors);
        // An action that fails to render on one side is reported as a failure, not as added
        // or removed.
        let failed = |k: &(&str, ActionKey<'_>)| b_failed.contains(k) || a_failed.contains(k);
        for (&(rule, key), &bv) in &b {
            let slot = acc
                .rules
                .entry(rule)
                .or_default()
                .actions
                .entry(key)
                .or_default();
            slot.before += 1;
            if failed(&(rule, key)) {
                continue;
            }
            match a.get(&(rule, key)) {
                None => slot.removed.add(seq, || ParamExample {
                    event: id.to_owned(),
                    before: Some(shown(bv)),
                    after: None,
                }),
                Some(&av) if av != bv => slot.changed.add(seq, || {
                    let (before, after) = differing(bv, av);
                    ParamExample {
                        event: id.to_owned(),
                        before: Some(before),
                        after: Some(after),
                    }
                }),
                Some(_) => {}
            }
        }
        for (&(rule, key), &av) in &a {
            let slot = acc
                .rules
                .entry(rule)
                .or_default()
                .actions
                .entry(key)
                .or_default();
            slot.after += 1;
            if !b.contains_key(&(rule, key)) && !failed(&(rule, key)) {
                slot.added.add(seq, || ParamExample {
                    event: id.to_owned(),
                    before: None,
                    after: Some(shown(av)),
                });
            }
        }
    }

    fn work(&self, chunk: Vec<Input>, acc: &mut Acc<'s>) {
        for input in chunk {
            let record = match input.record {
                Ok(Pending::Record(r)) => Ok(*r),
                Ok(Pending::Line(line, text)) => {
                    corpus::parse_record(line, &text).map_err(|e| e.to_string())
                }
                Err(e) => Err(e),
            };
            match record {
                Ok(r) => self.event(input.seq, input.corpus, &r, acc),
                Err(error) => {
                    let source = self
                        .corpora
                        .get(input.corpus)
                        .map(|(s, _)| s.clone())
                        .unwrap_or_default();
                    acc.unreadable
                        .add(input.seq, || Unreadable { source, error });
                }
            }
        }
    }
}

/// The parameters that differ between two renderings (top-level keys; the whole values when
/// either is not a table), each shown redacted.
fn differing(before: &Value, after: &Value) -> (Value, Value) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut bo = Map::new();
            let mut ao = Map::new();
            let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for k in keys {
                let (bv, av) = (b.get(k), a.get(k));
                if bv == av {
                    continue;
                }
                let show = |v: Option<&Value>| match v {
                    _ if secrets::is_credential_name(k) => json!("[redacted]"),
                    Some(v) => shown(v),
                    None => Value::Null,
                };
                bo.insert(k.clone(), show(bv));
                ao.insert(k.clone(), show(av));
            }
            (Value::Object(bo), Value::Object(ao))
        }
        _ => (shown(before), shown(after)),
    }
}

/// Rendered parameters as a plan shows them: values under a credential-named key (`token`,
/// `password`, `api_key`, …, at any depth) as `"[redacted]"`, long strings cut.
pub fn shown(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let s = if secrets::is_credential_name(k) {
                        json!("[redacted]")
                    } else {
                        shown(v)
                    };
                    (k.clone(), s)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(shown).collect()),
        Value::String(s) if s.chars().count() > MAX_SHOWN => {
            let cut: String = s.chars().take(MAX_SHOWN).collect();
            json!(format!("{cut}… ({} characters)", s.chars().count()))
        }
        other => other.clone(),
    }
}

/// What to replay and against what.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// The base revision's commit, for the fidelity check (`None`: a working tree).
    pub base_commit: Option<&'a str>,
    /// Worker threads (at least 1).
    pub workers: usize,
}

/// Replays `inputs` (in `seq` order) against `base` and `desired`. `corpora` names each input's
/// corpus (its source and kind) and says whether its text was scrubbed.
pub fn replay<I>(
    base: &ManifestSet,
    desired: &ManifestSet,
    corpora: &[(String, &'static str, bool)],
    inputs: I,
    options: Options<'_>,
) -> Behaviour
where
    I: Iterator<Item = Input>,
{
    let names: Vec<(String, &'static str)> =
        corpora.iter().map(|(s, k, _)| (s.clone(), *k)).collect();
    let replayer = Replayer {
        base: Side::new(base),
        desired: Side::new(desired),
        base_commit: options.base_commit,
        corpora: &names,
    };
    let workers = options.workers.max(1);
    let total = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Vec<Input>>(workers * 2);
        let rx = Arc::new(Mutex::new(rx));
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let rx = Arc::clone(&rx);
                let replayer = &replayer;
                scope.spawn(move || {
                    let mut acc = Acc::default();
                    loop {
                        let chunk = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => break,
                        };
                        match chunk {
                            Ok(chunk) => replayer.work(chunk, &mut acc),
                            Err(_) => break,
                        }
                    }
                    acc
                })
            })
            .collect();
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut inline = Acc::default();
        for input in inputs {
            chunk.push(input);
            if chunk.len() == CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                if let Err(mpsc::SendError(back)) = tx.send(full) {
                    // Every worker is gone (one panicked): replay here instead.
                    replayer.work(back, &mut inline);
                }
            }
        }
        if !chunk.is_empty()
            && let Err(mpsc::SendError(back)) = tx.send(chunk)
        {
            replayer.work(back, &mut inline);
        }
        drop(tx);
        let mut total = inline;
        for h in handles {
            match h.join() {
                Ok(acc) => total.merge(acc),
                Err(_) => total.unreadable.add(u64::MAX, || Unreadable {
                    source: String::new(),
                    error: "a replay worker stopped unexpectedly; the counts are incomplete"
                        .to_owned(),
                }),
            }
        }
        total
    });
    finish(base, desired, corpora, total, options)
}

fn failures(map: HashMap<FailureKey<'_>, Picks<String>>) -> Vec<RenderFailure> {
    let mut out: Vec<RenderFailure> = map
        .into_iter()
        .map(|((rule, key, error), picks)| {
            let c = picks.done();
            RenderFailure {
                rule: rule.to_owned(),
                integration: key.integration.to_owned(),
                action: key.action.to_owned(),
                occurrence: key.occurrence,
                error,
                count: c.count,
                events: c.examples,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.rule, &a.integration, &a.action, a.occurrence, &a.error).cmp(&(
            &b.rule,
            &b.integration,
            &b.action,
            b.occurrence,
            &b.error,
        ))
    });
    out
}

fn finish(
    base: &ManifestSet,
    desired: &ManifestSet,
    corpora: &[(String, &'static str, bool)],
    acc: Acc<'_>,
    options: Options<'_>,
) -> Behaviour {
    let errors = failures(acc.errors);
    let already_failing = failures(acc.already);
    let mut summary = Summary {
        render_errors: errors.iter().map(|e| e.count).sum(),
        ..Summary::default()
    };
    let mut rules: Vec<RuleBehaviour> = acc
        .rules
        .into_iter()
        .map(|(id, r)| {
            let status = match (base.rules.contains_key(id), desired.rules.contains_key(id)) {
                (false, true) => "added",
                (true, false) => "removed",
                _ => "kept",
            };
            let mut actions: Vec<(ActionKey<'_>, ActionAcc)> = r.actions.into_iter().collect();
            actions.sort_by(|a, b| a.0.cmp(&b.0));
            let actions: Vec<ActionBehaviour> = actions
                .into_iter()
                .map(|(k, a)| ActionBehaviour {
                    integration: k.integration.to_owned(),
                    action: k.action.to_owned(),
                    occurrence: k.occurrence,
                    before: a.before,
                    after: a.after,
                    added: a.added.done(),
                    removed: a.removed.done(),
                    changed: a.changed.done(),
                })
                .collect();
            let failing = errors.iter().any(|e| e.rule == id);
            let changed = r.matched_before != r.matched_after
                || failing
                || actions
                    .iter()
                    .any(|a| a.added.count + a.removed.count + a.changed.count > 0);
            for a in &actions {
                summary.actions_added += a.added.count;
                summary.actions_removed += a.removed.count;
                summary.actions_changed += a.changed.count;
            }
            RuleBehaviour {
                rule: id.to_owned(),
                status,
                matched_before: r.matched_before,
                matched_after: r.matched_after,
                changed,
                actions,
            }
        })
        .collect();
    rules.sort_by(|a, b| a.rule.cmp(&b.rule));
    summary.rules_changed = rules.iter().filter(|r| r.changed).count();
    let mut approximate: Vec<Approximate> = acc
        .approximate
        .into_iter()
        .map(|((rule, field), (stand_in, events))| Approximate {
            rule: rule.to_owned(),
            field,
            stand_in,
            events,
        })
        .collect();
    approximate.sort_by(|a, b| (&a.rule, &a.field).cmp(&(&b.rule, &b.field)));
    let mut unknown: Vec<Unknown> = acc
        .unknown
        .into_iter()
        .map(|((revision, integration, event, reason), count)| Unknown {
            revision,
            integration,
            event,
            reason,
            count,
        })
        .collect();
    unknown.sort_by(|a, b| {
        (a.revision, &a.integration, &a.event).cmp(&(b.revision, &b.integration, &b.event))
    });
    let fidelity = options.base_commit.and_then(|commit| {
        (acc.compared > 0).then(|| Fidelity {
            revision: commit.to_owned(),
            compared: acc.compared,
            differ: acc.differ.done(),
        })
    });
    Behaviour {
        corpora: corpora
            .iter()
            .enumerate()
            .map(|(i, (source, kind, scrub_text))| CorpusInfo {
                source: source.clone(),
                kind,
                events: acc.per_corpus.get(&i).copied().unwrap_or(0),
                scrub_text: *scrub_text,
            })
            .collect(),
        events: acc.events,
        summary,
        rules,
        silenced: acc.silenced.done(),
        newly_triggering: acc.newly,
        errors,
        already_failing,
        approximate,
        not_normalised: acc.not_normalised.done(),
        unreadable: acc.unreadable.done(),
        enrichment_pending: acc.enrichment_pending,
        unknown,
        fidelity,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::*;
    use crate::manifest::source::{Contents, FileKind, RawFile, Snapshot};

    const SLACK: &str = "id = \"slack-main\"\nplatform = \"slack\"\n[credentials]\nbot_token = { env = \"B\" }\nsigning_secret = { env = \"S\" }\n";
    const SLACK_EU: &str = "id = \"slack-eu\"\nplatform = \"slack\"\n[credentials]\nbot_token = { env = \"B\" }\nsigning_secret = { env = \"S\" }\n";

    fn rule(id: &str, condition: &str, actions: &[(&str, &str)]) -> String {
        let mut s = format!(
            "id = \"{id}\"\n[trigger]\nintegration = \"slack-main\"\nevent = \"message\"\n{condition}"
        );
        for (integration, text) in actions {
            s.push_str(&format!(
                "[[actions]]\nintegration = \"{integration}\"\naction = \"send_message\"\n[actions.parameters]\nchannel = \"#c\"\nmessage = \"{text}\"\n"
            ));
        }
        s
    }

    fn set(rules: &[String]) -> ManifestSet {
        let mut files = vec![
            RawFile {
                path: "integrations/slack.toml".into(),
                kind: FileKind::Integration,
                contents: Contents::Bytes(SLACK.as_bytes().to_vec()),
            },
            RawFile {
                path: "integrations/slack-eu.toml".into(),
                kind: FileKind::Integration,
                contents: Contents::Bytes(SLACK_EU.as_bytes().to_vec()),
            },
        ];
        for (i, r) in rules.iter().enumerate() {
            files.push(RawFile {
                path: format!("rules/r{i}.toml"),
                kind: FileKind::Rule,
                contents: Contents::Bytes(r.as_bytes().to_vec()),
            });
        }
        let loaded = crate::manifest::load(&Snapshot::in_memory(files));
        let shown = loaded.diagnostics.render("");
        loaded.set.unwrap_or_else(|| panic!("{shown}"))
    }

    fn message(n: u64, text: &str) -> Input {
        Input {
            seq: n,
            corpus: 0,
            record: Ok(Pending::Record(Box::new(Record {
                id: format!("evt_{n}"),
                received_ms: None,
                received_at: None,
                integration: "slack-main".into(),
                platform: "slack".into(),
                event: "message".into(),
                revision: Some("c".repeat(40)),
                rules: vec!["help".into()],
                enrichment_pending: false,
                replaced: None,
                payload: json!({"event": {"type": "message", "channel": "C1", "user": "U1", "text": text, "ts": format!("{n}.0001")}, "event_id": format!("Ev{n}"), "event_time": 1_700_000_000, "type": "event_callback"}),
            }))),
        }
    }

    fn corpus() -> Vec<Input> {
        (0..40)
            .map(|n| {
                message(
                    n,
                    if n % 4 == 0 {
                        "help me please"
                    } else {
                        "hello Name1"
                    },
                )
            })
            .collect()
    }

    fn run(base: &ManifestSet, desired: &ManifestSet, workers: usize) -> Behaviour {
        replay(
            base,
            desired,
            &[("c.jsonl".into(), "corpus", false)],
            corpus().into_iter(),
            Options {
                base_commit: Some(&"c".repeat(40)),
                workers,
            },
        )
    }

    /// Removing the first of two actions of the same name leaves the second unchanged: actions
    /// are identified by integration, name and occurrence, not by position.
    #[test]
    fn actions_are_identified_by_name_and_occurrence_not_position() {
        let cond = "[trigger.conditions]\n\"message.text\" = { matches = \"help\" }\n";
        let base = set(&[rule(
            "help",
            cond,
            &[
                ("slack-eu", "eu {{ message.text }}"),
                ("slack-main", "one"),
                ("slack-main", "two"),
            ],
        )]);
        let desired = set(&[rule(
            "help",
            cond,
            &[("slack-main", "one"), ("slack-main", "two (changed)")],
        )]);
        let b = run(&base, &desired, 2);
        let r = &b.rules[0];
        assert_eq!((r.matched_before, r.matched_after), (10, 10));
        let find = |integration: &str, occurrence: usize| {
            r.actions
                .iter()
                .find(|a| a.integration == integration && a.occurrence == occurrence)
                .unwrap()
        };
        assert_eq!(find("slack-eu", 0).removed.count, 10);
        assert_eq!(find("slack-main", 0).changed.count, 0);
        assert_eq!(find("slack-main", 0).removed.count, 0);
        assert_eq!(find("slack-main", 1).changed.count, 10);
        assert_eq!(
            find("slack-main", 1).changed.examples[0],
            ParamExample {
                event: "evt_0".into(),
                before: Some(json!({"message": "two"})),
                after: Some(json!({"message": "two (changed)"})),
            }
        );
        // The earliest examples, in corpus order.
        let ids: Vec<&str> = find("slack-eu", 0)
            .removed
            .examples
            .iter()
            .map(|e| e.event.as_str())
            .collect();
        assert_eq!(ids, ["evt_0", "evt_4", "evt_8"]);
        assert_eq!(b.summary.rules_changed, 1);
        assert_eq!(b.fidelity.as_ref().unwrap().compared, 40);
        // The daemon recorded `help` on every event, the replay on a quarter.
        assert_eq!(b.fidelity.as_ref().unwrap().differ.count, 30);
    }

    /// The report is the same whatever the number of workers (examples chosen by position).
    #[test]
    fn the_report_does_not_depend_on_the_threads() {
        let base = set(&[rule("help", "", &[("slack-main", "{{ message.text }}")])]);
        let desired = set(&[rule(
            "help",
            "[trigger.conditions]\n\"message.text\" = { matches = \"help\" }\n",
            &[("slack-main", "{{ message.text }}!")],
        )]);
        let one = run(&base, &desired, 1);
        for workers in [2, 3, 8] {
            assert_eq!(run(&base, &desired, workers), one);
        }
        assert_eq!(one.events, 40);
        assert_eq!(one.silenced.count, 30);
        assert_eq!(one.rules[0].actions[0].changed.count, 10);
        assert_eq!(one.rules[0].actions[0].removed.count, 30);
        // `message.text` holds the `Name1` stand-in on 30 events, in the desired revision's
        // condition.
        assert_eq!(one.approximate.len(), 1);
        assert_eq!(one.approximate[0].field, "message.text");
        assert_eq!(one.approximate[0].stand_in, StandIn::Name);
        assert_eq!(one.approximate[0].events, 30);
    }

    /// A shadow rule matches but performs nothing (the daemon runs none of it): switching it on
    /// adds its actions, putting it in shadow removes them.
    #[test]
    fn a_shadow_rule_matches_but_performs_nothing() {
        let cond = "[trigger.conditions]\n\"message.text\" = { matches = \"help\" }\n";
        let active = set(&[rule("help", cond, &[("slack-main", "{{ message.text }}")])]);
        let shadow = set(&[format!(
            "mode = \"shadow\"\n{}",
            rule("help", cond, &[("slack-main", "{{ message.text }}")])
        )]);
        let on = run(&shadow, &active, 2);
        let r = &on.rules[0];
        assert_eq!((r.matched_before, r.matched_after), (10, 10));
        assert_eq!(r.actions[0].added.count, 10);
        assert_eq!(r.actions[0].removed.count, 0);
        let off = run(&active, &shadow, 2);
        assert_eq!(off.rules[0].actions[0].removed.count, 10);
        assert_eq!(off.rules[0].actions[0].added.count, 0);
    }

    #[test]
    fn credential_named_parameters_are_redacted_and_long_strings_cut() {
        let v = json!({"channel": "#a", "api_key": "k-1", "nested": {"password": "p", "ok": [1, {"token": "t"}]}, "long": "x".repeat(500)});
        let s = shown(&v);
        assert_eq!(s["api_key"], "[redacted]");
        assert_eq!(s["nested"]["password"], "[redacted]");
        assert_eq!(s["nested"]["ok"][1]["token"], "[redacted]");
        assert!(s["long"].as_str().unwrap().ends_with("… (500 characters)"));
        let (b, a) = differing(
            &json!({"token": "old", "same": 1, "text": "a"}),
            &json!({"token": "new", "same": 1, "text": "b"}),
        );
        assert_eq!(b, json!({"token": "[redacted]", "text": "a"}));
        assert_eq!(a, json!({"token": "[redacted]", "text": "b"}));
        let text = serde_json::to_string(&(b, a)).unwrap();
        assert!(!text.contains("old") && !text.contains("new"), "{text}");
    }

    /// Bad lines, unknown platforms and events are counted, never a panic.
    #[test]
    fn what_does_not_replay_is_counted() {
        let s = set(&[rule("help", "", &[("slack-main", "hi")])]);
        let mut inputs = corpus();
        inputs.truncate(1);
        if let Ok(Pending::Record(r)) = &mut inputs[0].record {
            r.enrichment_pending = true;
        }
        inputs.push(Input {
            seq: 1,
            corpus: 0,
            record: Ok(Pending::Line(3, "not json".into())),
        });
        let mut odd = message(2, "x");
        if let Ok(Pending::Record(r)) = &mut odd.record {
            r.platform = "nope".into();
        }
        inputs.push(odd);
        let mut unknown_event = message(3, "x");
        if let Ok(Pending::Record(r)) = &mut unknown_event.record {
            r.event = "nope".into();
        }
        inputs.push(unknown_event);
        let b = replay(
            &s,
            &s,
            &[("c.jsonl".into(), "corpus", false)],
            inputs.into_iter(),
            Options {
                base_commit: None,
                workers: 2,
            },
        );
        assert_eq!(b.unreadable.count, 1);
        assert_eq!(b.enrichment_pending, 1);
        assert_eq!(b.not_normalised.count, 1);
        assert_eq!(b.unknown.len(), 2);
        assert_eq!(b.unknown[0].event.as_deref(), Some("nope"));
        assert!(b.fidelity.is_none());
        assert!(!b.has_changes());
    }
}
