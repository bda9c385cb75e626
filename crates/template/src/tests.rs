//! The evaluator against what Go's text/template and docker give.

use serde_json::{Value, json};

use crate::{Method, Options, Template};

fn run(t: &str, data: Value) -> String {
    Template::parse(t)
        .unwrap_or_else(|e| panic!("{t}: {e}"))
        .execute(&data, &Options::default())
        .unwrap_or_else(|e| panic!("{t}: {e}"))
}

fn err(t: &str, data: Value) -> String {
    match Template::parse(t) {
        Err(e) => e.to_string(),
        Ok(tpl) => tpl
            .execute(&data, &Options::default())
            .expect_err(t)
            .to_string(),
    }
}

fn ctr() -> Value {
    json!({
        "Names": "web",
        "ID": "0123456789ab",
        "State": {"Status": "running", "Running": true, "ExitCode": 0, "Pid": null},
        "Config": {"Env": ["A=1", "B=2"], "Labels": {"app": "db", "tier": "back"}},
        "Ports": [],
        "Size": 1.5,
    })
}

#[test]
fn fields_and_nested_fields() {
    assert_eq!(run("{{.Names}}", ctr()), "web");
    assert_eq!(
        run("{{.State.Status}} {{.State.Running}}", ctr()),
        "running true"
    );
    assert_eq!(run("{{.Config.Env}}", ctr()), "[A=1 B=2]");
    assert_eq!(run("{{.Config.Labels}}", ctr()), "map[app:db tier:back]");
    assert_eq!(run("{{.State.Pid}}", ctr()), "<nil>");
    assert_eq!(run("{{.Size}}", ctr()), "1.5");
    assert_eq!(run("id={{ .ID }}.", ctr()), "id=0123456789ab.");
}

#[test]
fn unknown_field_names_it_and_its_column() {
    assert_eq!(
        err("{{.Foo}}", ctr()),
        "template: :1:2: executing \"\" at <.Foo>: can't evaluate field Foo in type map[string]interface {}"
    );
    let e = err("a\nb {{.State.Nope}}", ctr());
    assert!(
        e.starts_with("template: :2:4: executing \"\" at <.State.Nope>: can't evaluate field Nope"),
        "{e}"
    );
    let e = err("{{.Names.First}}", ctr());
    assert!(
        e.contains("can't evaluate field First in type string"),
        "{e}"
    );
}

#[test]
fn parse_errors_carry_positions() {
    assert_eq!(err("{{.Names", ctr()), "template: :1:0: unclosed action");
    assert_eq!(
        err("ab{{nope .X}}", ctr()),
        "template: :1:4: function \"nope\" not defined"
    );
    assert_eq!(
        err("{{if .X}}x", ctr()),
        "template: :1:2: unexpected EOF: if without end"
    );
    assert_eq!(
        err("x\n  {{end}}", ctr()),
        "template: :2:2: unexpected {{end}}"
    );
    assert_eq!(
        err("{{\"abc}}", ctr()),
        "template: :1:2: unterminated quoted string"
    );
    assert!(err("{{define \"x\"}}{{end}}", ctr()).contains("not supported"));
    assert_eq!(
        err("{{}}", ctr()),
        "template: :1:0: missing value for command"
    );
}

#[test]
fn json_of_dot_and_of_a_field() {
    assert_eq!(run("{{json .Config.Env}}", ctr()), r#"["A=1","B=2"]"#);
    assert_eq!(run("{{json .State.Status}}", ctr()), r#""running""#);
    assert_eq!(run("{{json .}}", json!({"a": "<&>"})), r#"{"a":"<&>"}"#);
}

#[test]
fn trim_markers_eat_white_space_on_their_side() {
    assert_eq!(run("a  {{- .Names -}}  \n b", ctr()), "awebb");
    assert_eq!(run("a {{- .Names}} b", ctr()), "aweb b");
    // Without a space after it, `-` is a number's sign.
    assert_eq!(run("a {{-3}}", ctr()), "a -3");
    assert_eq!(run("x {{/* a comment */}} y", ctr()), "x  y");
    assert_eq!(run("x {{- /* a comment */ -}} y", ctr()), "xy");
}

#[test]
fn range_over_lists_and_maps_with_variables() {
    assert_eq!(
        run("{{range .Config.Env}}[{{.}}]{{end}}", ctr()),
        "[A=1][B=2]"
    );
    assert_eq!(
        run(
            "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
            ctr()
        ),
        "app=db;tier=back;"
    );
    assert_eq!(
        run("{{range $i, $e := .Config.Env}}{{$i}}{{end}}", ctr()),
        "01"
    );
    assert_eq!(run("{{range .Ports}}p{{else}}none{{end}}", ctr()), "none");
    assert_eq!(
        run("{{range .Config.Env}}{{$.Names}}{{end}}", ctr()),
        "webweb"
    );
    assert_eq!(run("{{$n := .Names}}{{$n}}-{{$n}}", ctr()), "web-web");
}

#[test]
fn if_else_chains_and_with() {
    let t = "{{if eq .State.Status \"exited\"}}E{{else if .State.Running}}R{{else}}?{{end}}";
    assert_eq!(run(t, ctr()), "R");
    assert_eq!(run("{{if .Ports}}y{{else}}n{{end}}", ctr()), "n");
    assert_eq!(run("{{if and .Names (not .Ports)}}ok{{end}}", ctr()), "ok");
    assert_eq!(run("{{with .State}}{{.Status}}{{end}}", ctr()), "running");
    assert_eq!(run("{{with .Ports}}x{{else}}empty{{end}}", ctr()), "empty");
    assert_eq!(
        run("{{if gt (len .Config.Env) 1}}many{{end}}", ctr()),
        "many"
    );
}

#[test]
fn functions_and_pipes() {
    assert_eq!(run("{{.Names | upper}}", ctr()), "WEB");
    assert_eq!(run("{{upper .Names | lower}}", ctr()), "web");
    assert_eq!(run("{{title \"hello world\"}}", ctr()), "Hello World");
    assert_eq!(run("{{truncate .ID 4}}", ctr()), "0123");
    assert_eq!(run("{{join .Config.Env \",\"}}", ctr()), "A=1,B=2");
    assert_eq!(run("{{len .Config.Env}} {{len .Names}}", ctr()), "2 3");
    assert_eq!(run("{{index .Config.Labels \"app\"}}", ctr()), "db");
    assert_eq!(run("[{{index .Config.Labels \"none\"}}]", ctr()), "[]");
    assert_eq!(run("{{index .Config.Env 1}}", ctr()), "B=2");
    assert_eq!(
        run(
            "{{printf \"%-6s|%5d|%.2f|%q\" .Names 42 .Size .Names}}",
            ctr()
        ),
        "web   |   42|1.50|\"web\""
    );
    assert_eq!(run("{{printf \"%d\" .Names}}", ctr()), "%!d(string=web)");
    // docker turns a written `\n` into a newline everywhere, even here.
    assert_eq!(run("{{\"literal\"}} {{`raw\\n`}}", ctr()), "literal raw\n");
    assert_eq!(run("{{split \"a:b\" \":\"}}", ctr()), "[a b]");
    assert_eq!(run("{{pad .Names 1 2}}|", ctr()), " web  |");
    assert_eq!(run("{{print 1 2 \"x\"}}", ctr()), "1 2x");
    assert!(
        err("{{truncate .Names}}", ctr())
            .contains("wrong number of args for truncate: want 2 got 1")
    );
}

#[test]
fn escaped_tabs_and_newlines_as_shells_pass_them() {
    assert_eq!(run("{{.Names}}\\t{{.ID}}\\n", ctr()), "web\t0123456789ab\n");
}

#[test]
fn methods_take_arguments() {
    fn label(obj: &Value, args: &[Value]) -> Result<Value, String> {
        let key = args.first().and_then(Value::as_str).ok_or("want a key")?;
        Ok(obj["Config"]["Labels"]
            .get(key)
            .cloned()
            .unwrap_or(json!("")))
    }
    let methods: &[(&str, Method)] = &[("Label", label)];
    let opts = Options {
        methods,
        headers: &[],
    };
    let t = Template::parse("{{.Label \"app\"}}/{{.Label \"x\"}}").unwrap();
    assert_eq!(t.execute(&ctr(), &opts).unwrap(), "db/");
    let e = Template::parse("{{.Names \"x\"}}")
        .unwrap()
        .execute(&ctr(), &opts)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("can't give argument to non-function .Names"),
        "{e}"
    );
}

#[test]
fn table_prints_headers_and_aligns_columns() {
    let rows = vec![
        json!({"ID": "abc", "Names": "web", "CreatedAt": "now"}),
        json!({"ID": "abcdef0123456", "Names": "db", "CreatedAt": "then"}),
    ];
    let opts = Options {
        methods: &[],
        headers: &[("ID", "CONTAINER ID")],
    };
    let t = Template::parse("table {{.ID}}\t{{upper .Names}}\\t{{.CreatedAt}}").unwrap();
    assert!(t.is_table());
    assert_eq!(
        t.render(&rows, &opts).unwrap(),
        "CONTAINER ID    NAMES     CREATED AT\n\
         abc             WEB       now\n\
         abcdef0123456   DB        then\n"
    );
    // Not a table: rows as they are, one a line.
    let t = Template::parse("{{.Names}}").unwrap();
    assert_eq!(t.render(&rows, &opts).unwrap(), "web\ndb\n");
    assert!(!Template::parse("tablet").unwrap().is_table());
}

#[test]
fn header_words_split_field_names_at_capitals() {
    assert_eq!(crate::header_word("CreatedAt", &[]), "CREATED AT");
    assert_eq!(crate::header_word("ID", &[]), "ID");
    assert_eq!(
        crate::header_word("RunningFor", &[("RunningFor", "CREATED")]),
        "CREATED"
    );
    assert_eq!(crate::header_word("ImageID", &[]), "IMAGE ID");
}

#[test]
fn tabwriter_blocks_are_sized_on_their_own() {
    // A line without a tab ends the first column's block: the lines
    // around it are sized apart.
    assert_eq!(
        crate::tabwrite("a\tb\tc\nx\n0123456789abc\ty\n"),
        "a         b         c\nx\n0123456789abc   y\n"
    );
}

#[test]
fn parentheses_strings_with_braces_and_piped_printf() {
    assert_eq!(
        run("{{(index .Config.Labels \"app\") | upper}}", ctr()),
        "DB"
    );
    assert_eq!(run("{{\"}}\"}}", ctr()), "}}");
    assert_eq!(run("{{.State.Status | printf \"%s!\"}}", ctr()), "running!");
    assert_eq!(
        run(
            "{{if .State.Running}}{{range .Config.Env}}{{.}};{{end}}{{end}}",
            ctr()
        ),
        "A=1;B=2;"
    );
    assert_eq!(
        err("{{else}}", ctr()),
        "template: :1:0: unexpected {{else}}"
    );
    assert!(err("{{.Names | .ID}}", ctr()).contains("can't give argument to non-function"));
}

/// Go's ChainNode: fields of what a parenthesized pipeline (or a
/// function) yields, checked against Go 1.19's text/template.
#[test]
fn fields_of_a_parenthesized_pipeline() {
    let data = json!({
        "Names": "web",
        "Ports": [{"HostPort": 8080, "Proto": "tcp"}, {"HostPort": 53, "Proto": "udp"}],
        "Config": {"Labels": {"app": "db"}},
    });
    assert_eq!(run("{{(index .Ports 0).HostPort}}", data.clone()), "8080");
    assert_eq!(run("{{(index .Ports 1).Proto}}", data.clone()), "udp");
    assert_eq!(run("{{(.Config).Labels.app}}", data.clone()), "db");
    assert_eq!(
        run("{{$x := .Config}}{{($x).Labels.app}}", data.clone()),
        "db"
    );
    // The chain's value goes on down a pipe and into blocks.
    assert_eq!(
        run("{{(index .Ports 1).Proto | upper}}", data.clone()),
        "UDP"
    );
    assert_eq!(run("{{(.Config).Labels.app | len}}", data.clone()), "2");
    assert_eq!(
        run(
            "{{with (index .Ports 0).Proto}}{{.}}{{end}}{{if (index .Ports 1).HostPort}}!{{end}}",
            data.clone()
        ),
        "tcp!"
    );
    assert_eq!(run("{{((index .Ports 0)).Proto}}", data.clone()), "tcp");
    // Go's wording and place: the term's last operand.
    assert_eq!(
        err("{{(json .).x}}", data.clone()),
        "template: :1:8: executing \"\" at <.>: can't evaluate field x in type string"
    );
    assert_eq!(
        err("{{(printf \"%s\" .Names).X}}", data.clone()),
        "template: :1:15: executing \"\" at <.Names>: can't evaluate field X in type string"
    );
    assert_eq!(
        err("{{ (index .Ports 0).HostPort.Z }}", data.clone()),
        "template: :1:17: executing \"\" at <0>: can't evaluate field Z in type int"
    );
    // An error inside the pipeline is the pipeline's own.
    assert_eq!(
        err("{{(index .Ports 5).HostPort}}", data.clone()),
        "template: :1:3: executing \"\" at <index .Ports 5>: error calling index: index out of range: 5"
    );
    // A literal has no fields; a space makes two operands, as in Go.
    assert_eq!(
        err("{{\"abc\".X}}", data.clone()),
        "template: :1:7: unexpected . after term \"\\\"abc\\\"\""
    );
    assert!(err("{{nil.X}}", data.clone()).contains("unexpected . after term \"nil\""));
    let e = err("{{(.Config) .Labels}}", data.clone());
    assert!(e.contains("can't give argument to non-function"), "{e}");
}

#[test]
fn a_chain_heads_its_column_and_calls_methods() {
    fn label(obj: &Value, args: &[Value]) -> Result<Value, String> {
        let key = args.first().and_then(Value::as_str).ok_or("want a key")?;
        Ok(obj["Labels"].get(key).cloned().unwrap_or(json!("")))
    }
    let methods: &[(&str, Method)] = &[("Label", label)];
    let opts = Options {
        methods,
        headers: &[],
    };
    let rows = vec![json!({"Items": [{"Labels": {"k": "v"}, "HostPort": 1}]})];
    let t =
        Template::parse("table {{(index .Items 0).HostPort}}\\t{{(index .Items 0).Label \"k\"}}")
            .unwrap();
    assert_eq!(
        t.render(&rows, &opts).unwrap(),
        "HOST PORT   LABEL\n1           v\n"
    );
}
