//! The manual stays true: every internal link and anchor of README.md,
//! DESIGN.md and docs/*.md leads somewhere, nothing points outside the
//! repository, the book's summary lists every chapter, and the manual's
//! tables list everything the code has: every event type of the contract,
//! every setting the binaries read, every problem type, every route and
//! method of the OpenAPI document, every metric and every command.
//!
//! No database or broker is needed: `cargo test -p api --test manual`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

use clap::CommandFactory;
use utoipa::OpenApi;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository's root")
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Markdown files whose links are checked, relative to the root.
fn checked_files() -> Vec<String> {
    let mut files = vec!["README.md".to_string(), "DESIGN.md".to_string()];
    let mut docs: Vec<String> = fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("an entry of docs/").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// Fails with every problem found, one per line.
fn report(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Markdown: headings, anchors, links.

/// Whether the line opens or closes a fenced code block.
fn is_fence(line: &str) -> bool {
    let trimmed = line.trim_start();
    line.len() - trimmed.len() <= 3 && (trimmed.starts_with("```") || trimmed.starts_with("~~~"))
}

/// The lines outside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if is_fence(line) {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence {
            lines.push((index + 1, line));
        }
    }
    lines
}

/// The text of an ATX heading (`## Title`), or none.
fn heading(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let hashes = trimmed.len() - trimmed.trim_start_matches('#').len();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = &trimmed[hashes..];
    if !rest.is_empty() && !rest.starts_with(' ') {
        return None;
    }
    Some(rest.trim().trim_end_matches('#').trim_end())
}

/// GitHub's anchor for a heading: the rendered text (inline code, emphasis
/// and link targets gone), lowercased, punctuation dropped except `-` and
/// `_`, spaces turned into `-`.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    // `[text](target)` renders as text.
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|i| open + i) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|i| close + i) else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    text.chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Every anchor of a Markdown file, duplicates numbered as GitHub does.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let Some(title) = heading(line) else { continue };
        let base = slug(title);
        let count = seen.entry(base.clone()).or_insert(0);
        let anchor = if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        };
        *count += 1;
        anchors.insert(anchor);
    }
    anchors
}

/// The line without its inline code spans.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].len() - rest[start..].trim_start_matches('`').len();
        let fence = &rest[start..start + ticks];
        let after = &rest[start + ticks..];
        match after.find(fence) {
            Some(end) => rest = &after[end + ticks..],
            // An unclosed span (it goes on on the next line): drop the rest.
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// The targets of the inline links and images of a file (`[text](target)`)
/// and of its reference definitions (`[label]: target`), with their lines.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut links = Vec::new();
    for (number, line) in prose_lines(text) {
        if line.starts_with("    ") || line.starts_with('\t') {
            continue; // an indented code block
        }
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(open) = rest.find("](") {
            let after = &rest[open + 2..];
            let mut depth = 0usize;
            let end = after.char_indices().find(|&(_, c)| match c {
                '(' => {
                    depth += 1;
                    false
                }
                ')' if depth == 0 => true,
                ')' => {
                    depth -= 1;
                    false
                }
                _ => false,
            });
            let Some((end, _)) = end else { break };
            let target = after[..end].trim();
            // `<target>` and `target "title"`.
            let target = target.split_whitespace().next().unwrap_or("");
            let target = target.trim_start_matches('<').trim_end_matches('>');
            links.push((number, target.to_string()));
            rest = &after[end + 1..];
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            if let Some(colon) = trimmed.find("]: ") {
                let target = trimmed[colon + 3..].split_whitespace().next().unwrap_or("");
                links.push((number, target.to_string()));
            }
        }
    }
    links
}

/// `path` with `.` and `..` resolved lexically, or none if it leaves `/`.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

#[test]
fn every_internal_link_and_anchor_leads_somewhere_inside_the_repository() {
    let root = root();
    let files = checked_files();
    let mut anchor_cache: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = read(file);
        let dir = Path::new(file)
            .parent()
            .unwrap_or(Path::new(""))
            .to_path_buf();
        for (line, target) in links(&text) {
            let external = ["http://", "https://", "mailto:", "ftp://"]
                .iter()
                .any(|scheme| target.starts_with(scheme));
            if external || target.is_empty() {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let relative = if path.is_empty() {
                PathBuf::from(file)
            } else if path.starts_with('/') {
                problems.push(format!(
                    "{file}:{line}: `{target}` is absolute; use a path relative to {file}"
                ));
                continue;
            } else {
                let decoded = path.replace("%20", " ");
                match normalize(&dir.join(decoded)) {
                    Some(relative) => relative,
                    None => {
                        problems.push(format!(
                            "{file}:{line}: `{target}` points outside the repository"
                        ));
                        continue;
                    }
                }
            };
            let absolute = root.join(&relative);
            if !absolute.exists() {
                problems.push(format!(
                    "{file}:{line}: `{target}`: {} does not exist",
                    relative.display()
                ));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if absolute.extension().and_then(|e| e.to_str()) != Some("md") {
                problems.push(format!(
                    "{file}:{line}: `{target}`: an anchor into a file that is not Markdown"
                ));
                continue;
            }
            let known = anchor_cache.entry(relative.clone()).or_insert_with(|| {
                anchors(&fs::read_to_string(&absolute).expect("a Markdown file"))
            });
            if !known.contains(anchor) {
                let near: Vec<&String> = known
                    .iter()
                    .filter(|a| {
                        let stem = anchor.split('-').next().unwrap_or(anchor);
                        a.contains(stem)
                    })
                    .take(5)
                    .collect();
                let hint = if near.is_empty() {
                    String::new()
                } else {
                    format!(" (anchors with a like word: {near:?})")
                };
                problems.push(format!(
                    "{file}:{line}: `{target}`: no heading of {} has the anchor #{anchor}{hint}",
                    relative.display()
                ));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} internal links found: is the parser broken?"
    );
    report("internal links", &problems);
}

/// The text files of the repository (not `target/`, nor what git ignores
/// for local use), relative to the root.
fn repository_text_files(dir: &Path, into: &mut Vec<PathBuf>) {
    const SKIPPED: [&str; 5] = ["target", ".git", ".run", ".keys", "node_modules"];
    const TEXT: [&str; 12] = [
        "md", "rs", "toml", "sh", "py", "yml", "yaml", "json", "sql", "html", "js", "example",
    ];
    for entry in fs::read_dir(dir).expect("a directory of the repository") {
        let path = entry.expect("an entry").path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if path.is_dir() {
            if !SKIPPED.contains(&name.as_deref().unwrap_or("")) {
                repository_text_files(&path, into);
            }
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| TEXT.contains(&e))
            || name.as_deref() == Some("Dockerfile")
        {
            into.push(path);
        }
    }
}

#[test]
fn nothing_in_the_repository_names_the_shared_folder_beside_it() {
    let root = root();
    let mut files = Vec::new();
    repository_text_files(&root, &mut files);
    assert!(files.len() > 100, "found {} files", files.len());
    let outside = ["..", "shared", ""].join("/");
    let mut problems = Vec::new();
    for path in files {
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            if line.contains(&outside) {
                problems.push(format!(
                    "{}:{}: names `{outside}…`, a folder outside the repository",
                    path.strip_prefix(&root).unwrap_or(&path).display(),
                    number + 1
                ));
            }
        }
    }
    report("paths outside the repository", &problems);
}

#[test]
fn the_summary_lists_every_chapter() {
    let summary = read("docs/SUMMARY.md");
    let listed: BTreeSet<String> = links(&summary)
        .into_iter()
        .map(|(_, target)| target)
        .collect();
    let problems: Vec<String> = checked_files()
        .into_iter()
        .filter_map(|file| file.strip_prefix("docs/").map(str::to_string))
        .filter(|chapter| chapter != "SUMMARY.md" && !listed.contains(chapter))
        .map(|chapter| format!("docs/SUMMARY.md: docs/{chapter} is not listed"))
        .collect();
    report("the book's summary", &problems);
}

#[test]
fn the_slugs_are_githubs() {
    assert_eq!(slug("Problems (RFC 7807)"), "problems-rfc-7807");
    assert_eq!(slug("`api`"), "api");
    assert_eq!(slug("The webhooks' own events"), "the-webhooks-own-events");
    assert_eq!(slug("9. The report"), "9-the-report");
    assert_eq!(slug("Delivery, at least once"), "delivery-at-least-once");
    assert_eq!(slug("A [link](x.md) and_snake"), "a-link-and_snake");
    assert_eq!(
        anchors("# A\n## A\n```\n# B\n```\n### A\n"),
        ["a", "a-1", "a-2"].map(String::from).into()
    );
    assert_eq!(
        links("[a](b.md#c) `[d](e.md)` [f](<g.md> \"t\")\n[h]: i.md\n"),
        vec![
            (1, "b.md#c".to_string()),
            (1, "g.md".to_string()),
            (2, "i.md".to_string())
        ]
    );
}

// ---------------------------------------------------------------------------
// The manual's tables against the code.

/// The names missing from `chapter`, each looked for as `pattern(name)`.
fn missing<'a>(
    chapter: &str,
    what: &str,
    names: impl IntoIterator<Item = &'a String>,
    pattern: impl Fn(&str) -> String,
) -> Vec<String> {
    let text = read(chapter);
    names
        .into_iter()
        .filter(|name| !text.contains(&pattern(name)))
        .map(|name| {
            format!(
                "{chapter}: {what} `{name}` is not in the table (looked for `{}`)",
                pattern(name)
            )
        })
        .collect()
}

#[test]
fn the_event_table_lists_every_event_type_of_the_contract() {
    let names: Vec<String> = domain::all_event_types()
        .map(|event| event.name().to_string())
        .collect();
    assert!(
        names.len() > 20,
        "the contract lists {} event types",
        names.len()
    );
    let problems = missing("docs/architecture.md", "event type", &names, |name| {
        format!("| `{name}` |")
    });
    report("the event table", &problems);
}

/// Every environment variable an argument of `command` (or of any of its
/// subcommands) reads, with the binary that reads it.
fn settings_of(
    command: &clap::Command,
    binary: &str,
    into: &mut BTreeMap<String, BTreeSet<String>>,
) {
    for argument in command.get_arguments() {
        if let Some(env) = argument.get_env() {
            into.entry(env.to_string_lossy().into_owned())
                .or_default()
                .insert(binary.to_string());
        }
    }
    for subcommand in command.get_subcommands() {
        settings_of(subcommand, binary, into);
    }
}

fn binaries() -> [(&'static str, clap::Command); 4] {
    [
        ("api", api::settings::Cli::command()),
        ("relay", relay::settings::Cli::command()),
        ("projector", projector::settings::Cli::command()),
        ("worker", worker::settings::Cli::command()),
    ]
}

#[test]
fn the_configuration_reference_lists_every_setting_the_binaries_read() {
    let mut settings = BTreeMap::new();
    for (binary, command) in binaries() {
        settings_of(&command, binary, &mut settings);
    }
    assert!(settings.len() > 50, "found {} settings", settings.len());
    let text = read("docs/configuration.md");
    let problems: Vec<String> = settings
        .iter()
        .filter(|(name, _)| !text.contains(&format!("| `{name}` |")))
        .map(|(name, readers)| {
            let readers: Vec<&str> = readers.iter().map(String::as_str).collect();
            format!(
                "docs/configuration.md: setting `{name}` (read by {}) is not in the table",
                readers.join(", ")
            )
        })
        .collect();
    report("the configuration reference", &problems);
}

/// The problem types `ApiError::kind` answers: the string literals of its
/// match arms, read from the source so that a new kind needs no list kept
/// beside it.
fn problem_kinds() -> Vec<String> {
    let source = read("api/src/problem.rs");
    let start = source
        .find("pub fn kind(&self)")
        .expect("api/src/problem.rs has `pub fn kind(&self)`");
    let body = &source[start..];
    let open = body.find('{').expect("the body of kind");
    let mut depth = 0usize;
    let mut end = body.len();
    for (index, c) in body[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    end = open + index;
                    break;
                }
            }
            _ => {}
        }
    }
    let mut kinds = BTreeSet::new();
    for arm in body[open..end].split("=>").skip(1) {
        let arm = arm.trim_start();
        if let Some(literal) = arm.strip_prefix('"') {
            if let Some(close) = literal.find('"') {
                kinds.insert(literal[..close].to_string());
            }
        }
    }
    kinds.into_iter().collect()
}

#[test]
fn the_problem_table_lists_every_problem_type() {
    let kinds = problem_kinds();
    assert!(
        kinds.len() > 15,
        "found {} problem types: {kinds:?}",
        kinds.len()
    );
    let problems = missing("docs/http-api.md", "problem type", &kinds, |kind| {
        format!("| `{kind}` |")
    });
    report("the problem table", &problems);
}

#[test]
fn the_route_table_lists_every_route_of_the_openapi_document() {
    let document = serde_json::to_value(api::openapi::ApiDoc::openapi()).expect("the document");
    let paths = document["paths"].as_object().expect("the document's paths");
    let mut routes = Vec::new();
    for (path, item) in paths {
        for method in [
            "get", "put", "post", "delete", "patch", "options", "head", "trace",
        ] {
            if item.get(method).is_some() {
                routes.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    assert!(routes.len() > 40, "found {} routes", routes.len());
    let problems = missing("docs/http-api.md", "route", &routes, |route| {
        format!("| `{route}` |")
    });
    report("the route table", &problems);
}

#[test]
fn the_metrics_table_lists_every_metric() {
    let mut metrics: Vec<&str> = Vec::new();
    metrics.extend(api::http_metrics::NAMES);
    metrics.extend(api::http_metrics::OBSERVED);
    metrics.extend(app::metrics::NAMES);
    metrics.push(infra::command_metrics::COMMANDS);
    metrics.extend(relay::metrics::NAMES);
    metrics.extend(relay::metrics::OBSERVED);
    metrics.extend(projector::metrics::NAMES);
    metrics.extend(worker::metrics::NAMES);
    metrics.push(worker::webhooks::metrics::DELIVERIES);
    metrics.push(worker::webhooks::metrics::DURATION);
    metrics.extend(bus::metrics::NAMES);
    metrics.extend(bus::metrics::OBSERVED);
    let metrics: BTreeSet<String> = metrics.into_iter().map(String::from).collect();
    // A metric with labels is listed as `name{label,...}`.
    let text = read("docs/operations.md");
    let problems: Vec<String> = metrics
        .iter()
        .filter(|name| {
            !text.contains(&format!("| `{name}` |")) && !text.contains(&format!("| `{name}{{"))
        })
        .map(|name| format!("docs/operations.md: metric `{name}` is not in the table"))
        .collect();
    report("the metrics table", &problems);
}

/// Every command of `command`'s tree that does something: a leaf, as its
/// words (`["api", "admin", "bootstrap"]`).
fn commands_of(command: &clap::Command, words: Vec<String>, into: &mut Vec<Vec<String>>) {
    let subcommands: Vec<&clap::Command> = command
        .get_subcommands()
        .filter(|sub| sub.get_name() != "help")
        .collect();
    if subcommands.is_empty() {
        into.push(words);
        return;
    }
    for sub in subcommands {
        let mut words = words.clone();
        words.push(sub.get_name().to_string());
        commands_of(sub, words, into);
    }
}

#[test]
fn the_binaries_chapter_describes_every_command() {
    let text = read("docs/binaries.md");
    let mut commands = Vec::new();
    for (binary, command) in binaries() {
        commands_of(&command, vec![binary.to_string()], &mut commands);
    }
    assert!(commands.len() > 10, "found {} commands", commands.len());
    // `api admin bootstrap ...`, or a leaf among alternatives:
    // `projector dead-letters list|replay|purge ...`.
    let described = |words: &[String]| {
        let (leaf, parents) = words.split_last().expect("a command has a name");
        if parents.is_empty() {
            return text.contains(&format!("`{leaf}`")) || text.contains(&format!("`{leaf} "));
        }
        let prefix = format!("`{} ", parents.join(" "));
        text.match_indices(&prefix).any(|(at, _)| {
            let after = &text[at + prefix.len()..];
            let word = after.split([' ', '`', '\n']).next().unwrap_or("");
            word.split('|').any(|alternative| alternative == leaf)
        })
    };
    let problems: Vec<String> = commands
        .iter()
        .filter(|words| !described(words))
        .map(|words| {
            format!(
                "docs/binaries.md: command `{}` is not described",
                words.join(" ")
            )
        })
        .collect();
    report("the binaries chapter", &problems);
}
