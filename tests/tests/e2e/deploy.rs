//! The CloudFormation stack (`deploy/kappa-lake.yaml`) deployed on moto, as
//! `aws cloudformation deploy` would with every parameter at its default but the event-time
//! column: moto creates the stream or queue, bucket, lease table, IAM roles, network, ECS
//! cluster, task definition and service (it skips Glue, which the consumer creates itself).
//! Then the task definition's own command line and environment run against those resources
//! (the metrics port and scratch directory moved to free ones), the producer writes what the
//! stack's output says, the health check the task definition names answers, SIGTERM drains, and
//! the stack's query command, DuckDB over S3 and the Glue table all see the rows.

use std::process::Stdio;
use std::time::{Duration, Instant};

use kappa_tests::{Moto, expect_status, kappa, run};
use serde_json::Value;

/// Creates the stack and returns its outputs and the consumer container's command and
/// environment.
fn deploy(moto: &Moto, stack: &str, parameters: &[(&str, &str)]) -> Value {
    let template = kappa_tests::workspace_root().join("deploy/kappa-lake.yaml");
    let parameters: Vec<Value> = parameters.iter().map(|(k, v)| serde_json::json!({"ParameterKey": k, "ParameterValue": v})).collect();
    let code = format!(
        r#"
import boto3, json, time
kw = dict(endpoint_url={endpoint:?}, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
cf = boto3.client("cloudformation", **kw)
cf.create_stack(StackName={stack:?}, TemplateBody=open({template:?}).read(), Capabilities=["CAPABILITY_NAMED_IAM"], Parameters=json.loads({parameters:?}))
for _ in range(240):
    s = cf.describe_stacks(StackName={stack:?})["Stacks"][0]
    if s["StackStatus"] != "CREATE_IN_PROGRESS":
        break
    time.sleep(0.25)
ecs = boto3.client("ecs", **kw)
td = ecs.describe_task_definition(taskDefinition={stack:?} + "-consumer")["taskDefinition"]
services = ecs.describe_services(cluster={stack:?}, services=["consumer"])["services"]
print(json.dumps({{"status": s["StackStatus"], "outputs": {{o["OutputKey"]: o["OutputValue"] for o in s.get("Outputs", [])}},
    "container": td["containerDefinitions"][0], "desired": services[0]["desiredCount"] if services else None,
    "resources": sorted(r["ResourceType"] for r in cf.list_stack_resources(StackName={stack:?})["StackResourceSummaries"] if r["ResourceType"])}}))
"#,
        endpoint = moto.endpoint,
        template = template.display().to_string(),
        parameters = serde_json::to_string(&parameters).unwrap(),
    );
    let deployed: Value = serde_json::from_str(kappa_tests::python(&code).trim()).unwrap();
    assert_eq!(deployed["status"], "CREATE_COMPLETE", "{deployed:#}");
    deployed
}

/// `command` (the AWS CLI, or a script that calls it) pointed at moto, with its test credentials.
fn on_moto<'a>(command: &'a mut std::process::Command, moto: &Moto) -> &'a mut std::process::Command {
    command
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_PAGER", "")
}

/// The container's command, to run here: the binary built, the metrics on a free port, the
/// scratch directory in `scratch`.
fn consumer_command(container: &Value, moto: &Moto, port: u16, scratch: &std::path::Path) -> std::process::Command {
    let mut args: Vec<String> = container["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    assert_eq!(args[0], "/kappa-consumer", "{args:?}");
    for (flag, value) in [("--metrics-addr", format!("127.0.0.1:{port}")), ("--spill-dir", scratch.display().to_string())] {
        let at = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} in {args:?}"));
        args[at + 1] = value;
    }
    let mut command = kappa("kappa-consumer", Some(&moto.endpoint));
    command.args(&args[1..]);
    for variable in container["environment"].as_array().unwrap() {
        command.env(variable["name"].as_str().unwrap(), variable["value"].as_str().unwrap());
    }
    command
}

fn deploy_and_consume(source: &str) {
    let moto = Moto::start();
    let stack = format!("kl-{source}");
    let deployed = deploy(&moto, &stack, &[("Source", source), ("EventTimeColumn", "sale_date")]);
    let outputs = &deployed["outputs"];
    let container = &deployed["container"];
    for kind in ["AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::ECS::Service", "AWS::ECS::TaskDefinition", "AWS::IAM::Role", "AWS::Logs::LogGroup"] {
        assert!(deployed["resources"].as_array().unwrap().iter().any(|r| r == kind), "{kind} in {:?}", deployed["resources"]);
    }
    assert_eq!(deployed["desired"], 0, "no task until the image is pushed (DesiredCount's default)");
    assert_eq!(container["user"], "65532:65532", "a non-root user");
    assert_eq!(container["readonlyRootFilesystem"], true);

    let dir = tempfile::tempdir().unwrap();
    let port = kappa_tests::free_port();
    let log = dir.path().join("consumer.log");
    let mut consumer =
        consumer_command(container, &moto, port, &dir.path().join("scratch")).stderr(Stdio::from(std::fs::File::create(&log).unwrap())).spawn().unwrap();

    // The producer, as the stack's output says, with the seed's sales files.
    let produce = outputs["ProduceCommand"].as_str().unwrap().to_string();
    let args: Vec<&str> = produce.split_whitespace().collect();
    assert_eq!(&args[..3], ["kappa-producer", "--input", "FILE.csv"], "{produce}");
    let mut producer = kappa("kappa-producer", Some(&moto.endpoint));
    producer.arg("--input").args(crate::support::sales_files()).args(&args[3..]);
    expect_status(&run(&mut producer), 0);

    // The task definition's health check answers once the consumer is ready.
    let check = container["healthCheck"]["command"].as_array().unwrap();
    assert_eq!(check[..3], [Value::from("CMD"), Value::from("/kappa-consumer"), Value::from("health")], "{check:?}");
    let health = || run(kappa("kappa-consumer", None).args(["health", "--addr", &format!("127.0.0.1:{port}")]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !health().status.success() {
        assert!(Instant::now() < deadline, "never ready: {}\n{}", String::from_utf8_lossy(&health().stderr), std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(Duration::from_millis(250));
    }
    let query = || {
        let command = outputs["QueryCommand"].as_str().unwrap();
        let sql = command.split_once('"').unwrap().1.trim_end_matches('"');
        let flags: Vec<&str> = command.split_once(" \"").unwrap().0.split_whitespace().skip(1).collect();
        run(kappa("kappa-query", Some(&moto.endpoint)).args(&flags).args(["--format", "csv", sql]))
    };
    // Every row committed (the flush interval is the default minute): then SIGTERM drains.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let output = query();
        if output.status.success() && String::from_utf8_lossy(&output.stdout).lines().nth(1) == Some("400") {
            break;
        }
        assert!(Instant::now() < deadline, "rows not committed: {}\n{}", String::from_utf8_lossy(&output.stderr), std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(Duration::from_secs(1));
    }
    let stopping = Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &consumer.id().to_string()]).status().unwrap().success());
    let status = consumer.wait().unwrap();
    let drained = stopping.elapsed();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}:\n{text}");
    let stop_timeout = container["stopTimeout"].as_u64().unwrap();
    assert!(drained < Duration::from_secs(stop_timeout), "SIGTERM took {drained:?}, beyond the task's stop timeout {stop_timeout} s");
    eprintln!("{source}: drained {drained:?} after SIGTERM");
    // JSON lines (--log-format json), with the fields Logs Insights and the metric filters read.
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(lines.iter().any(|l| l["message"] == "summary" && l["rows_written"].as_u64() == Some(400)), "{text}");
    assert!(lines.iter().all(|l| l["level"].is_string() && l["timestamp"].is_string()), "{text}");

    // The Glue table Athena reads, where the stack says.
    let glue = outputs["GlueTable"].as_str().unwrap();
    let (database, table) = glue.split_once('.').unwrap();
    let code = format!(
        r#"
import boto3
g = boto3.client("glue", endpoint_url={endpoint:?}, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
t = g.get_table(DatabaseName={database:?}, Name={table:?})["Table"]
print(t["StorageDescriptor"]["Location"], t["Parameters"].get("table_type"))
"#,
        endpoint = moto.endpoint
    );
    let location = outputs["TableLocation"].as_str().unwrap();
    let registered = kappa_tests::python(&code);
    assert!(registered.trim().starts_with(location.trim_end_matches('/')) && registered.contains("DELTA"), "{registered} (expected {location})");
    // And the query command still answers after the drain.
    let output = query();
    expect_status(&output, 0);
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().nth(1), Some("400"));
}

#[test]
fn the_stack_deploys_on_moto_and_its_kinesis_consumer_runs_as_the_task_definition_says() {
    deploy_and_consume("kinesis");
}

#[test]
fn the_stack_deploys_on_moto_and_its_sqs_consumer_runs_as_the_task_definition_says() {
    deploy_and_consume("sqs");
}

/// docs/deploy.md's `aws` commands, as written, one after the other against moto: deploy,
/// outputs, other settings, scale, upgrade, roll back, tear down. (Building and pushing the
/// image are the image test's and a registry's.)
#[test]
fn the_deployment_guide_runs_as_written() {
    let moto = Moto::start();
    let root = kappa_tests::workspace_root();
    let guide = std::fs::read_to_string(root.join("docs/deploy.md")).unwrap();
    let mut commands = Vec::new();
    let mut in_block = false;
    for line in guide.lines() {
        match line.trim() {
            "```sh" => in_block = true,
            "```" => in_block = false,
            command if in_block && !command.is_empty() && !command.starts_with('#') => commands.push(command.to_string()),
            _ => {}
        }
    }
    let runnable: Vec<&String> = commands.iter().filter(|c| !c.contains("skopeo") && !c.starts_with("./scripts/")).collect();
    assert!(runnable.len() >= 8, "{commands:?}");
    let path = format!("{}:{}", root.join(".venv-deploy/bin").display(), std::env::var("PATH").unwrap_or_default());
    assert!(root.join(".venv-deploy/bin/aws").exists(), "the AWS CLI is missing: run ./scripts/setup-test-env");
    let mut script = String::from("set -euo pipefail\n");
    for command in &runnable {
        script.push_str(&format!("printf '%s\\n' '$ {}'\n{command}\n", command.replace('\'', "'\\''")));
    }
    let output = run(on_moto(std::process::Command::new("bash").args(["-c", &script]).current_dir(&root).env("PATH", path), &moto));
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{out}\n{err}");
    // Each step did what the guide says it does.
    // (moto gives a stack made from a change set, as `deploy` makes it, no outputs: the tests
    // above check them on a stack from create-stack.)
    assert!(out.contains("$ aws cloudformation describe-stacks"), "{out}");
    let scaled = out.split("$ aws ecs describe-services").nth(1).unwrap_or_default();
    assert!(scaled.lines().take(4).any(|l| l.trim() == "4,"), "desired count after scaling:\n{scaled}");
    assert!(out.contains("Successfully created/updated stack - kl"), "{out}");
    let gone =
        run(on_moto(std::process::Command::new(root.join(".venv-deploy/bin/aws")).args(["cloudformation", "describe-stacks", "--stack-name", "kl"]), &moto));
    assert!(!gone.status.success() || String::from_utf8_lossy(&gone.stdout).contains("DELETE_COMPLETE"), "the stack is torn down");
}

/// The stack's roles, enforced: moto checks IAM policies once `/moto-api/reset-auth` turns
/// authentication on, and the tools then run with the credentials of the role each is given.
/// The consumer writes the table and the query reads it, each through its own role; neither
/// reaches beyond its grant. What moto 5.2.5 can show bounds the test (EMULATORS.md): it fails
/// (KeyError) on the inline policies of roles CloudFormation made, so each role's policy, as the
/// stack resolved it, is put on a role of the test's own; outside S3 it matches a statement's
/// Resource against `*` only, denying every ARN-scoped grant, so the source, lease table, key and
/// catalog statements are not exercised (the consumer reads the embedded log here); and it does
/// not evaluate ListBucket's `s3:prefix` condition.
#[test]
fn the_roles_let_the_consumer_write_its_table_and_the_query_read_it_and_no_further() {
    let moto = Moto::start();
    let deployed = deploy(&moto, "kl-iam", &[("EventTimeColumn", "sale_date")]);
    let command = deployed["outputs"]["QueryCommand"].as_str().unwrap().to_string();
    let flags: Vec<&str> = command.split_once(" \"").unwrap().0.split_whitespace().skip(1).collect();
    let (lake, table) = (flags[1], flags[3]);
    let bucket = lake.strip_prefix("s3://").unwrap().split('/').next().unwrap().to_string();
    let code = format!(
        r#"
import ast, boto3, json, urllib.request
kw = dict(endpoint_url={endpoint:?}, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
cf, iam, sts = (boto3.client(s, **kw) for s in ("cloudformation", "iam", "sts"))
roles = {{r["LogicalResourceId"]: r["PhysicalResourceId"] for r in cf.list_stack_resources(StackName="kl-iam")["StackResourceSummaries"] if r["ResourceType"] == "AWS::IAM::Role"}}
trust = json.dumps({{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Principal": {{"AWS": "*"}}, "Action": "sts:AssumeRole"}}]}})
credentials = {{}}
for logical in ("ConsumerRole", "QueryRole"):
    copy = iam.create_role(RoleName=roles[logical] + "-test", AssumeRolePolicyDocument=trust)["Role"]
    for name in iam.list_role_policies(RoleName=roles[logical])["PolicyNames"]:
        document = iam.get_role_policy(RoleName=roles[logical], PolicyName=name)["PolicyDocument"]
        # moto keeps a CloudFormation role's policy as a Python literal.
        document = ast.literal_eval(document) if isinstance(document, str) else document
        iam.put_role_policy(RoleName=copy["RoleName"], PolicyName=name, PolicyDocument=json.dumps(document))
    c = sts.assume_role(RoleArn=copy["Arn"], RoleSessionName="kappa-test")["Credentials"]
    credentials[logical] = [c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]]
boto3.client("s3", **kw).put_object(Bucket={bucket:?}, Key="other/kept", Body=b"another tool's")
# The body is the count of requests still let through unchecked (a form content type would hide it).
urllib.request.urlopen(urllib.request.Request({endpoint:?} + "/moto-api/reset-auth", data=b"0", method="POST", headers={{"Content-Type": "text/plain"}}))
print(json.dumps(credentials))
"#,
        endpoint = moto.endpoint,
    );
    let credentials: Value = serde_json::from_str(kappa_tests::python(&code).trim()).unwrap();
    let as_role = |binary: &str, role: &str| {
        let mut command = kappa(binary, Some(&moto.endpoint));
        let c = &credentials[role];
        command
            .env("AWS_ACCESS_KEY_ID", c[0].as_str().unwrap())
            .env("AWS_SECRET_ACCESS_KEY", c[1].as_str().unwrap())
            .env("AWS_SESSION_TOKEN", c[2].as_str().unwrap());
        command
    };
    let dir = tempfile::tempdir().unwrap();
    let log = format!("log:{}", dir.path().join("log").display());
    let mut producer = kappa("kappa-producer", None);
    expect_status(&run(producer.args(["--to", &log, "--input"]).args(crate::support::sales_files())), 0);
    let consume = |role: &str, table: &str| {
        let mut command = as_role("kappa-consumer", role);
        run(command.args(["--from", &log, "--lake", lake, "--table", table, "--event-time", "sale_date", "--until-idle", "2s"]))
    };
    expect_status(&consume("ConsumerRole", table), 0);
    let sql = format!("SELECT count(*) FROM {table}");
    let output = run(as_role("kappa-query", "QueryRole").args(["--lake", lake, "--table", table, "--format", "csv", &sql]));
    expect_status(&output, 0);
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().nth(1), Some("400"));
    // Enforced: the test's own credentials (no IAM user's) are refused the same question.
    let output = run(kappa("kappa-query", Some(&moto.endpoint)).args(["--lake", lake, "--table", table, &sql]));
    assert!(!output.status.success(), "{output:?}");
    // Beyond the grants: the consumer writing another table, the query writing at all, and
    // either deleting what another tool keeps in the bucket.
    let output = consume("ConsumerRole", "other");
    assert!(!output.status.success() && String::from_utf8_lossy(&output.stderr).contains("AccessDenied"), "{output:?}");
    let denied = format!(
        r#"
import boto3, json
out = {{}}
for role, (key, secret, token) in json.loads({credentials:?}).items():
    s3 = boto3.client("s3", endpoint_url={endpoint:?}, region_name="us-east-1", aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token)
    for action, call in (("put", lambda: s3.put_object(Bucket={bucket:?}, Key="lake/{table}/x", Body=b"x")), ("delete", lambda: s3.delete_object(Bucket={bucket:?}, Key="other/kept"))):
        try:
            call()
            out[role + " " + action] = "allowed"
        except s3.exceptions.ClientError as e:
            out[role + " " + action] = e.response["Error"]["Code"]
print(json.dumps(out, sort_keys=True))
"#,
        credentials = credentials.to_string(),
        endpoint = moto.endpoint,
    );
    let outcomes: Value = serde_json::from_str(kappa_tests::python(&denied).trim()).unwrap();
    assert_eq!(
        outcomes,
        serde_json::json!({"ConsumerRole delete": "AccessDenied", "ConsumerRole put": "allowed", "QueryRole delete": "AccessDenied", "QueryRole put": "AccessDenied"})
    );
}

/// The stack in a network of the user's (issue 62): a VPC with two private subnets and a route
/// table made first, then the stack deployed into them with interface endpoints, scaling on
/// backlog, a task meant to run and an address to mail. It makes no VPC, subnet or gateway of
/// its own, and puts the
/// tasks' security group in the given VPC. (moto makes no alarms, metric filters, interface
/// endpoints or subscriptions and keeps no service network configuration: deploy/rules/ checks
/// those in the template, with cfn-guard, in scripts/check-deploy.)
#[test]
fn the_stack_deploys_on_moto_into_a_given_vpc_and_private_subnets() {
    let moto = Moto::start();
    let code = format!(
        r#"
import boto3, json
kw = dict(endpoint_url={endpoint:?}, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
ec2 = boto3.client("ec2", **kw)
vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{{i}}.0/24", AvailabilityZone=f"us-east-1{{z}}")["Subnet"]["SubnetId"] for i, z in ((1, "a"), (2, "b"))]
table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
lists = {{p["PrefixListName"]: p["PrefixListId"] for p in ec2.describe_managed_prefix_lists()["PrefixLists"]}}
prefixes = ",".join(lists[f"com.amazonaws.us-east-1.{{s}}"] for s in ("s3", "dynamodb"))
print(json.dumps({{"vpc": vpc, "subnets": ",".join(subnets), "table": table, "prefixes": prefixes}}))
"#,
        endpoint = moto.endpoint
    );
    let network: Value = serde_json::from_str(kappa_tests::python(&code).trim()).unwrap();
    let (vpc, subnets, table) = (network["vpc"].as_str().unwrap(), network["subnets"].as_str().unwrap(), network["table"].as_str().unwrap());
    let prefixes = network["prefixes"].as_str().unwrap();
    let parameters = [
        ("VpcId", vpc),
        ("SubnetIds", subnets),
        ("RouteTableIds", table),
        ("InterfaceEndpoints", "true"),
        ("VpcCidr", "10.9.0.0/16"),
        ("EgressPrefixListIds", prefixes),
        ("DesiredCount", "1"),
        ("MaxCount", "2"),
        ("AlarmEmail", "ops@example.com"),
    ];
    let deployed = deploy(&moto, "kl-private", &parameters);
    let resources = deployed["resources"].as_array().unwrap();
    for kind in ["AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::InternetGateway", "AWS::EC2::Route"] {
        assert!(!resources.iter().any(|r| r == kind), "the stack made a {kind} of its own in a given network: {resources:?}");
    }
    for kind in ["AWS::ECS::Service", "AWS::EC2::SecurityGroup", "AWS::SNS::Topic", "AWS::Events::Rule"] {
        assert!(resources.iter().any(|r| r == kind), "{kind} in {resources:?}");
    }
    assert_eq!(deployed["desired"], 1);
    let code = format!(
        r#"
import boto3, json
kw = dict(endpoint_url={endpoint:?}, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
cf, ec2 = boto3.client("cloudformation", **kw), boto3.client("ec2", **kw)
group = [r["PhysicalResourceId"] for r in cf.list_stack_resources(StackName="kl-private")["StackResourceSummaries"] if r["LogicalResourceId"] == "TaskSecurityGroup"][0]
g = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]
print(json.dumps({{"vpc": g["VpcId"]}}))
"#,
        endpoint = moto.endpoint
    );
    let group: Value = serde_json::from_str(kappa_tests::python(&code).trim()).unwrap();
    assert_eq!(group["vpc"], vpc, "the tasks' security group is in the given VPC");
    // (moto ignores a security group's egress rules in CloudFormation: the limit behind the
    // endpoints, EgressPrefixListIds, is checked by deploy/rules/, not here.)
    // The stack's own network, for comparison: a VPC, its gateway endpoints, no topic given.
    let own = deploy(&moto, "kl-own", &[]);
    let own = own["resources"].as_array().unwrap();
    assert!(own.iter().any(|r| r == "AWS::EC2::VPC") && own.iter().filter(|r| *r == "AWS::EC2::VPCEndpoint").count() == 2, "{own:?}");
}

/// `scripts/deploy`, the one-command deploy, against moto: a first run creates the stack with no
/// consumer, then starts the default two; a second scales to three; a third, with no change,
/// keeps the three. The image is a file here and not pushed (`--no-push`): moto has no
/// registry, so `skopeo copy` to ECR is the one step not run (docs/deploy.md).
#[test]
fn the_deploy_script_creates_the_stack_then_scales_and_keeps_its_count() {
    let moto = Moto::start();
    let root = kappa_tests::workspace_root();
    assert!(root.join(".venv-deploy/bin/aws").exists(), "the AWS CLI is missing: run ./scripts/setup-test-env");
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("kappa-lake.oci.tar");
    std::fs::write(&image, b"not pushed").unwrap();
    let path = format!("{}:{}", root.join(".venv-deploy/bin").display(), std::env::var("PATH").unwrap_or_default());
    let deploy = |extra: &[&str]| {
        let mut command = std::process::Command::new(root.join("scripts/deploy"));
        command.arg("kl").arg("--image").arg(&image).arg("--no-push").args(extra).env("PATH", &path);
        let output = run(on_moto(&mut command, &moto));
        let err = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(output.status.success(), "scripts/deploy {extra:?}:\n{err}");
        let mut aws = std::process::Command::new(root.join(".venv-deploy/bin/aws"));
        aws.args(["ecs", "describe-services", "--cluster", "kl", "--services", "consumer", "--query", "services[0].desiredCount", "--output", "text"]);
        let desired = run(on_moto(&mut aws, &moto));
        (err, String::from_utf8_lossy(&desired.stdout).trim().to_string())
    };
    let (log, desired) = deploy(&["ShardCount=3"]);
    assert!(log.contains("creating stack kl") && log.contains("not pushing"), "{log}");
    assert_eq!(desired, "2", "{log}");
    let (log, desired) = deploy(&["--count", "3"]);
    assert!(log.contains("updating stack kl"), "{log}");
    assert_eq!(desired, "3", "{log}");
    let (log, desired) = deploy(&[]);
    assert_eq!(desired, "3", "an existing stack keeps its count: {log}");
    // A bad flag is refused before anything is done.
    let output = run(std::process::Command::new(root.join("scripts/deploy")).args(["kl", "--count", "many"]).env("PATH", &path));
    expect_status(&output, 2);
}
