"""In-process functions share one os.environ: the stack takes the union of their template environments, and refuses
to start when two functions give one variable different values."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from devstack.stack import LocalStack, StackError

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Environment:
      Variables:
        TABLE_NAME: !Ref Things
Resources:
  Things:
    Type: AWS::DynamoDB::Table
  First:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: first
      Handler: app.handler
      Environment: {Variables: {MODE: fast}}
  Second:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: second
      Handler: app.handler
      Environment: {Variables: {MODE: %s}}
"""


def _stack(tmp_path: Path, second_mode: str) -> LocalStack:
    (tmp_path / "template.yaml").write_text(textwrap.dedent(TEMPLATE % second_mode))
    return LocalStack(root=tmp_path, dynamodb="moto", port=0, stack_name="env")


def test_functions_that_agree_share_the_union_of_their_environments(tmp_path: Path) -> None:
    assert _stack(tmp_path, "fast").function_environment() == {"TABLE_NAME": "env-Things", "MODE": "fast"}


def test_functions_that_disagree_on_a_variable_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"First and Second set MODE differently \('fast' vs 'slow'\)"):
        _stack(tmp_path, "slow").function_environment()
