"""FHIR libraries nobody here wrote, against the hub's FHIR R4 lab read API (/fhir/r4).

validate: reads a JSON array of FHIR resources (bundles, reads, OperationOutcomes, the
  CapabilityStatement) from stdin and checks each with fhir.resources (R4B pydantic models) and with
  fhirclient's R4 (4.0.1) models, strictly. Prints one JSON line per resource: {"index", "type",
  "errors"}; exits 1 when any fails.
search BASE TOKEN IDENTIFIER CODE: a FHIR client (SMART's python fhirclient) reads the
  CapabilityStatement, searches DiagnosticReport by patient.identifier with
  _include=DiagnosticReport:result, Observation by patient.identifier and code, and Patient by
  identifier; prints one JSON object with what it found.

Exit 3 when a package is missing (tests/python/requirements.txt not installed).
"""

import json
import sys

try:
    from fhir.resources.R4B import get_fhir_model_class
    from fhirclient.models.fhirelementfactory import FHIRElementFactory
    from fhirclient.models.fhirabstractbase import FHIRValidationError
    from fhirclient.models.diagnosticreport import DiagnosticReport
    from fhirclient.models.observation import Observation
    from fhirclient.models.patient import Patient
    from fhirclient.server import FHIRServer
except ImportError as e:  # an older .venv
    print(f"python package missing: {e}", file=sys.stderr)
    sys.exit(3)


def validate(items):
    failed = 0
    for i, res in enumerate(items):
        kind = res.get("resourceType", "?")
        errors = []
        try:
            get_fhir_model_class(kind).model_validate(res)
        except Exception as e:  # pydantic ValidationError, KeyError for an unknown type
            errors.append("fhir.resources R4B: " + str(e)[:2000])
        try:
            FHIRElementFactory.instantiate(kind, res)
        except FHIRValidationError as e:
            errors.append("fhirclient R4: " + str(e)[:2000])
        except Exception as e:
            errors.append("fhirclient R4: " + type(e).__name__ + ": " + str(e)[:2000])
        if errors:
            failed += 1
        print(json.dumps({"index": i, "type": kind, "errors": errors}, ensure_ascii=False))
    return failed


def search(base, token, identifier, code):
    server = FHIRServer(None, base_uri=base)
    server.session.headers["Authorization"] = "Bearer " + token
    out = {}
    cap = server.capabilityStatement
    out["fhirVersion"] = cap.fhirVersion
    out["resources"] = [r.type for r in cap.rest[0].resource]

    reports, included = [], []
    s = DiagnosticReport.where(struct={"patient.identifier": identifier}).include("result")
    for bundle in s.perform_iter(server):
        out["report_total"] = bundle.total
        for entry in bundle.entry or []:
            r = entry.resource
            if entry.search.mode == "match":
                tags = [t.code for t in (r.meta.tag or [])] if r.meta else []
                reports.append({"id": r.id, "status": r.status, "tags": tags,
                                "results": len(r.result or [])})
            else:
                included.append(r.id)
    out["reports"] = reports
    out["included"] = included

    observations = []
    s = Observation.where(struct={"patient.identifier": identifier, "code": code})
    for r in s.perform_resources_iter(server):
        q = r.valueQuantity
        observations.append({"id": r.id, "value": float(q.value) if q else None,
                             "unit": q.code if q else None, "status": r.status})
    out["observations"] = observations

    patients = []
    for p in Patient.where(struct={"identifier": identifier}).perform_resources_iter(server):
        patients.append({"id": p.id, "gender": p.gender,
                         "birthDate": p.birthDate.isostring if p.birthDate else None,
                         "identifiers": [[i.system, i.value] for i in p.identifier or []]})
    out["patients"] = patients
    if patients:
        # A read by id through the same client.
        out["read"] = Patient.read(patients[0]["id"], server).id
    print(json.dumps(out, ensure_ascii=False))
    return 0


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "validate":
        sys.exit(1 if validate(json.load(sys.stdin)) else 0)
    if len(sys.argv) == 6 and sys.argv[1] == "search":
        sys.exit(search(*sys.argv[2:]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
