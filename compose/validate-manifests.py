"""Validates every document of the Kubernetes manifests given as `kubectl apply` would judge its
fields: built-in kinds with kubernetes-validate, custom resources against the CRDs vendored
under deploy/schemas (KEDA's ScaledObject and TriggerAuthentication). Strict for both: a field
the schema does not name is an error (the API server refuses it, or drops it from a custom
resource), and so is a kind no schema knows or a file that does not parse (checkov skips such a
file without a word). Prints one line per problem, one summary line; exits 1 on any problem.

Run by compose/check-deploy.sh with the scanners' venv:
  python validate-manifests.py SCHEMAS_DIR MANIFEST...
"""

import glob
import os
import sys

import jsonschema
import kubernetes_validate
import yaml


def strict(schema):
    """A CRD's structural schema as JSON Schema that refuses unknown fields and takes `null`
    where the CRD says `nullable` (what openapi2jsonschema does for kubeconform)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {name: strict(sub) for name, sub in out["properties"].items()}
        if "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = strict(out[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = strict(out[key])
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def crd_schemas(directory):
    """(apiVersion, kind) -> JSON Schema, for every version of every CRD under `directory`."""
    schemas = {}
    for path in sorted(glob.glob(os.path.join(directory, "**", "*.yaml"), recursive=True)):
        with open(path) as file:
            for crd in yaml.safe_load_all(file):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for version in spec["versions"]:
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    schemas[key] = strict(version["schema"]["openAPIV3Schema"])
    return schemas


def problems_of(document, schemas, kubernetes_version):
    """Every problem of one document, as text; none when it validates."""
    key = (document.get("apiVersion"), document.get("kind"))
    if key in schemas:
        validator = jsonschema.Draft202012Validator(schemas[key])
        return [
            f"{'.'.join(str(part) for part in error.absolute_path) or '(top)'}: {error.message}"
            for error in sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
        ]
    try:
        kubernetes_validate.validate(document, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'.'.join(str(part) for part in error.path) or '(top)'}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"{error.message} (nor a CRD under deploy/schemas)"]
    return []


def main(schemas_dir, manifests):
    schemas = crd_schemas(schemas_dir)
    kubernetes_version = kubernetes_validate.latest_version()
    documents = failed = 0
    for path in manifests:
        try:
            with open(path) as file:
                loaded = [document for document in yaml.safe_load_all(file) if document]
        except yaml.YAMLError as error:
            print(f"ERROR {path}: does not parse: {error}")
            failed += 1
            continue
        for document in loaded:
            documents += 1
            name = f"{document.get('kind')}/{(document.get('metadata') or {}).get('name')}"
            for problem in problems_of(document, schemas, kubernetes_version):
                print(f"ERROR {path} {name}: {problem}")
                failed += 1
    print(
        f"kubernetes-validate {kubernetes_validate.__version__} (Kubernetes {kubernetes_version}, strict) "
        f"and {len(schemas)} CRD schemas: {documents} documents, {failed} problems"
    )
    return 1 if failed or not documents else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
