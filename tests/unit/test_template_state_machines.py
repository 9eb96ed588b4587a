"""State machines as the local stack reads them: their schedules, their ARNs, their definitions with the
substitutions applied; and the segment refresh's, from the real template (the job that replaced its work queue)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from devstack.states import definition, function_name
from devstack.template import Resolver, Template, load_template

ROOT = Path(__file__).resolve().parents[2]

SAMPLE = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/worker
      Handler: app.handler
  Job:
    Type: AWS::Serverless::StateMachine
    Properties:
      Name: !Sub "${AWS::StackName}-job"
      Definition:
        StartAt: Work
        States:
          Work:
            Type: Task
            Resource: arn:aws:states:::lambda:invoke
            Parameters:
              FunctionName: ${WorkerArn}
            End: true
      DefinitionSubstitutions:
        WorkerArn: !GetAtt Worker.Arn
      Events:
        Hourly:
          Type: Schedule
          Properties:
            Schedule: rate(1 hour)
        Paused:
          Type: Schedule
          Properties:
            Schedule: rate(1 day)
            Enabled: false
  Starter:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/starter
      Handler: app.handler
      Environment:
        Variables:
          JOB_ARN: !Ref Job
"""


def _sample(tmp_path: Path) -> Template:
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(SAMPLE))
    return load_template(path)


def test_a_state_machines_schedules_are_read_as_schedules_that_start_it(tmp_path: Path) -> None:
    template = _sample(tmp_path)
    schedules = {e.name: e for e in template.schedule_events}
    assert set(schedules) == {"Hourly", "Paused"}
    assert schedules["Hourly"].function == "Job" and schedules["Hourly"].state_machine
    assert schedules["Hourly"].expression == "rate(1 hour)" and schedules["Hourly"].enabled
    assert not schedules["Paused"].enabled
    assert [m.logical_id for m in template.state_machines] == ["Job"]


def test_a_ref_to_a_state_machine_is_its_arn_and_its_definition_gets_the_substitutions(tmp_path: Path) -> None:
    template = _sample(tmp_path)
    resolver = Resolver(template, stack_name="demo")
    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:demo-job"
    assert resolver.resolve(template.function("Starter").environment["JOB_ARN"]) == arn
    text = definition(template.resources["Job"], resolver)
    task = json.loads(text)["States"]["Work"]
    assert task["Parameters"]["FunctionName"] == "arn:aws:lambda:us-east-1:123456789012:function:demo-Worker"
    assert "${" not in text


def test_lambda_invoke_names_a_function_by_name_or_arn() -> None:
    assert function_name("demo-Worker") == "demo-Worker"
    assert function_name("arn:aws:lambda:us-east-1:123456789012:function:demo-Worker") == "demo-Worker"
    assert function_name("arn:aws:lambda:us-east-1:123456789012:function:demo-Worker:$LATEST") == "demo-Worker"
    assert function_name("123456789012:function:demo-Worker") == "demo-Worker"


def test_the_segment_refresh_is_a_state_machine_whose_shares_loop_and_retry() -> None:
    template = load_template(ROOT / "template.yaml")
    resource = template.resources["SegmentRefreshStateMachine"]
    document = json.loads(definition(resource, Resolver(template)))
    states = document["States"]
    # Begin, then pass one's Distributed Map over the shares, merge and fit, pass two's, finish
    order, name = [], document["StartAt"]
    while name:
        order.append(name)
        state = states[name]
        name = state.get("Default") if state["Type"] == "Choice" else state.get("Next")
    assert order == ["BeginRun", "RunIsThisExecutions", "ScanMembers", "MergeAndFit", "ScoreMembers", "FinishRun"]
    for pass_map, task, choice in (
        ("ScanMembers", "ScanShare", "ShareScanned"),
        ("ScoreMembers", "ScoreShare", "ShareScored"),
    ):
        processor = states[pass_map]["ItemProcessor"]
        assert processor["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
        assert states[pass_map]["ItemsPath"] == "$.shares"
        inner = processor["States"]
        # A share that hands on a continuation is sent back to its task by the Choice; a finished one succeeds
        assert processor["StartAt"] == task and inner[task]["Next"] == choice
        assert inner[choice]["Default"] == task
        assert inner[choice]["Choices"] == [
            {"Variable": "$.done", "BooleanEquals": True, "Next": inner[choice]["Choices"][0]["Next"]}
        ]
        assert inner[inner[choice]["Choices"][0]["Next"]]["Type"] == "Succeed"
        # The retry that replaces the work queue's redelivery (a crashed worker runs its share again)
        (retry,) = inner[task]["Retry"]
        assert "States.TaskFailed" in retry["ErrorEquals"] and retry["MaxAttempts"] >= 2
    # Another run in progress is not retried: the execution ends, naming why
    begin = states["BeginRun"]
    assert begin["Retry"][0] == {"ErrorEquals": ["RefreshInProgress"], "MaxAttempts": 0}
    assert states[begin["Catch"][0]["Next"]] == {
        "Type": "Fail",
        "Error": "RefreshInProgress",
        "Cause": "Another segment refresh is running; this one was not started.",
    }
    # No work queue is left for it
    assert not [q for q in template.queues if "Refresh" in q.logical_id]
    assert not [e for e in template.sqs_events if e.function == "SegmentRefreshFunction"]
