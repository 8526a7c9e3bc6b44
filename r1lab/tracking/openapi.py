"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json (docs/api.md is the prose)."""
from __future__ import annotations

_ERROR = {"description": "rejected; nothing stored", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

OPENAPI: dict = {
    "openapi": "3.1.0",
    "info": {"title": "r1lab API", "version": "1",
             "description": "Ingest metrics and rollout samples into r1lab, create external runs, read series. See docs/api.md."},
    "servers": [{"url": "/api/v1"}],
    "components": {
        "securitySchemes": {
            "runToken": {"type": "http", "scheme": "bearer", "description": "the run's ingest token (r1r_…), from POST /runs or the stage spec"},
            "personalToken": {"type": "http", "scheme": "bearer", "description": "a personal API token (account → API tokens)"},
        },
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string", "description": "what is wrong, naming the offending item, e.g. `metrics[3].value: must be a finite number (got 'nan')`"}}},
            "Metric": {"type": "object", "required": ["step", "key", "value"], "additionalProperties": False, "properties": {
                "step": {"type": "integer", "minimum": 0},
                "key": {"type": "string", "minLength": 1, "maxLength": 200, "examples": ["reward", "rewards/accuracy/mean", "kl"]},
                "value": {"type": "number", "description": "finite (no NaN, no ±Infinity)"},
                "ts": {"type": "number", "description": "wall time, seconds since the epoch; default: arrival time"},
            }},
            "Sample": {"type": "object", "required": ["step", "prompt", "completion", "rewards"], "properties": {
                "step": {"type": "integer", "minimum": 0},
                "prompt": {"type": "string"}, "completion": {"type": "string"},
                "rewards": {"type": "object", "additionalProperties": {"type": ["number", "null"]}, "description": "reward function name → value; `accuracy` ≥ 1 marks the sample correct"},
                "advantage": {"type": ["number", "null"]},
                "group": {"type": "integer", "minimum": 0, "description": "GRPO group (the G completions of one prompt)"},
                "index": {"type": "integer", "minimum": 0, "description": "position in the group; with `group` it identifies the sample for idempotent retries"},
                "prompt_id": {"type": ["string", "integer"]},
                "reward": {"type": "number", "description": "total reward; default: sum of `rewards`"},
                "think": {"type": "string"}, "answer": {"type": "string"},
                "length": {"type": "integer", "minimum": 0, "description": "tokens; default: characters of the completion"},
                "truncated": {"type": "boolean"},
                "language_consistency": {"type": "number"}, "language_mixed": {"type": "boolean"},
            }, "additionalProperties": True},
            "LogBody": {"type": "object", "additionalProperties": False, "properties": {
                "metrics": {"type": "array", "items": {"$ref": "#/components/schemas/Metric"}},
                "samples": {"type": "array", "items": {"$ref": "#/components/schemas/Sample"}},
            }},
            "Counts": {"type": "object", "properties": {"metrics": {"type": "integer"}, "samples": {"type": "integer"}}},
            "Window": {"type": "object", "properties": {
                "x": {"type": "array", "items": {"type": "integer"}}, "y": {"type": "array", "items": {"type": "number"}},
                "t": {"type": "array", "items": {"type": "number"}}, "total": {"type": "integer"},
                "downsampled": {"type": "boolean"}, "range": {"type": "array", "items": {"type": ["integer", "null"]}}}},
        },
    },
    "paths": {
        "/runs": {
            "post": {"summary": "Create an external run", "security": [{"personalToken": []}],
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "required": ["name"], "properties": {
                         "name": {"type": "string", "maxLength": 200}, "project": {"type": "string", "maxLength": 100}, "config": {"type": "object"}}}}}},
                     "responses": {"201": {"description": "created", "content": {"application/json": {"schema": {"type": "object", "properties": {
                         "id": {"type": "integer"}, "token": {"type": "string", "description": "the run's ingest token, shown once"},
                         "url": {"type": "string"}, "page": {"type": "string"}}}}}},
                         "400": _ERROR, "401": _ERROR, "403": _ERROR}},
            "get": {"summary": "List runs", "security": [{"personalToken": []}],
                    "parameters": [{"name": "project", "in": "query", "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "runs"}, "401": _ERROR, "403": _ERROR}},
        },
        "/runs/{id}/log": {"post": {
            "summary": "Log metrics and rollout samples (idempotent: a (run, key, step) point or a sample already stored is skipped)",
            "security": [{"runToken": []}],
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LogBody"}}}},
            "responses": {"200": {"description": "accepted (what the batch held) and stored (what was new)", "content": {"application/json": {"schema": {"type": "object", "properties": {
                "accepted": {"$ref": "#/components/schemas/Counts"}, "stored": {"$ref": "#/components/schemas/Counts"}}}}}},
                "400": _ERROR, "401": _ERROR, "403": _ERROR, "405": _ERROR, "413": _ERROR}}},
        "/runs/{id}/rewind": {"post": {
            "summary": ("Rewind a resumed run: this attempt continues after `step` (-1: from the start). What earlier "
                        "attempts logged after it leaves the curve and is kept as history; the values logged from now "
                        "on for those steps are stored (without it, a retry-safe ingest keeps the old ones)"),
            "security": [{"runToken": []}],
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "required": ["step"], "properties": {
                "step": {"type": "integer", "minimum": -1}}}}}},
            "responses": {"200": {"description": "the attempt now logging and what left the curve", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"step": {"type": "integer"}, "attempt": {"type": "integer"},
                                                 "lost": {"$ref": "#/components/schemas/Counts"}}}}}},
                "400": _ERROR, "401": _ERROR, "403": _ERROR}}},
        "/runs/{id}/config": {"post": {
            "summary": "Set keys of the run's config after it was created (top-level keys replaced, the others kept)",
            "security": [{"runToken": []}],
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "required": ["config"],
                "additionalProperties": False, "properties": {"config": {"type": "object"}}}}}},
            "responses": {"200": {"description": "the run's whole config after the update", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"id": {"type": "integer"}, "config": {"type": "object"}}}}}},
                "400": _ERROR, "401": _ERROR, "403": _ERROR, "405": _ERROR, "413": _ERROR}}},
        "/runs/{id}/finish": {"post": {
            "summary": "Finish a run", "security": [{"runToken": []}],
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "required": ["status"], "properties": {
                "status": {"enum": ["succeeded", "failed", "cancelled"]}}}}}},
            "responses": {"200": {"description": "finished"}, "400": _ERROR, "401": _ERROR, "403": _ERROR}}},
        "/runs/{id}/metrics": {"get": {
            "summary": "Read series, downsampled to at most max_points per series (min and max per bucket kept)",
            "security": [{"personalToken": []}],
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
                {"name": "keys", "in": "query", "schema": {"type": "string"}, "description": "comma-separated; default all"},
                {"name": "min_step", "in": "query", "schema": {"type": "integer"}},
                {"name": "max_step", "in": "query", "schema": {"type": "integer"}},
                {"name": "max_points", "in": "query", "schema": {"type": "integer", "minimum": 4, "maximum": 20000, "default": 2000}}],
            "responses": {"200": {"description": "series", "content": {"application/json": {"schema": {"type": "object", "properties": {
                "run": {"type": "integer"}, "series": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Window"}}}}}}},
                "400": _ERROR, "401": _ERROR, "403": _ERROR, "404": _ERROR}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    },
}
