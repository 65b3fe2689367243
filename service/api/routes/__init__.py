"""One router per resource; `hpscape.service.api.app` includes them all."""
