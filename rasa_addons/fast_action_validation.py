"""Rasa checks every action server reply with `jsonschema.validate()`, which first re-validates the
response *schema* against the JSON Schema metaschema, on every call. Profiled with py-spy under the chat
bench, that was 80 % of the Rasa server's CPU. This builds the same validator once; replies are checked
exactly as before (same schema, same error), only the schema is no longer re-checked each time.
"""

from __future__ import annotations

from typing import Any, Dict

from jsonschema import exceptions, validators
from rasa.core.actions.action import RemoteAction
from rasa.shared.constants import DOCS_BASE_URL


def install() -> None:
    schema = RemoteAction.action_response_format_spec()
    validator_class = validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)

    def _validate_action_result(self: RemoteAction, result: Dict[str, Any]) -> bool:
        error = exceptions.best_match(validator.iter_errors(result))
        if error is not None:
            error.message += (
                ". Failed to validate Action server response from API, make sure your response from the "
                f"Action endpoint is valid. For more information about the format visit {DOCS_BASE_URL}/custom-actions"
            )
            raise error
        return True

    RemoteAction._validate_action_result = _validate_action_result  # type: ignore[method-assign]
