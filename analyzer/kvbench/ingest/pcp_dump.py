"""Print every numeric value of a PCP archive as CSV lines `t,metric,instance,value`, raw (counters as
counted), one line per value of every record: PCP's own Python API (pmFetchArchive), no interpolation.

Run with the Python that has PCP's `pcp` module (the system one), not imported by kvbench:
    /usr/bin/python3 pcp_dump.py ARCHIVE [METRIC_PREFIX ...]
pmrep -r was not used: PCP 6.0.3's pmrep still turns dimensionless counters (e.g. nvidia.energy) into rates.
"""

from __future__ import annotations

import csv
import sys


def main(argv: list[str]) -> int:
    from cpmapi import PM_ERR_EOL, PM_MODE_FORW, PM_TYPE_STRING
    from pcp import pmapi  # the system Python's PCP binding

    archive, prefixes = argv[1], tuple(argv[2:])
    context = pmapi.pmContext(pmapi.c_api.PM_CONTEXT_ARCHIVE, archive)
    context.pmSetMode(PM_MODE_FORW, context.pmGetArchiveLabel().start, 0)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    names: dict[int, str] = {}
    descs: dict[int, object] = {}
    instances: dict[tuple[int, int], str] = {}
    while True:
        try:
            result = context.pmFetchArchive()
        except pmapi.pmErr as error:
            if error.args[0] == PM_ERR_EOL:
                return 0
            raise
        stamp = result.contents.timestamp
        t = f"{stamp.tv_sec}.{stamp.tv_usec:06d}"
        for i in range(result.contents.numpmid):
            pmid = result.contents.get_pmid(i)
            if pmid not in names:
                try:
                    names[pmid] = context.pmNameID(pmid)
                    descs[pmid] = context.pmLookupDescs([pmid])[0]
                except pmapi.pmErr:
                    names[pmid] = ""
            name, desc = names[pmid], descs.get(pmid)
            if not name or desc is None or (prefixes and not name.startswith(prefixes)):
                continue
            if desc.contents.type == PM_TYPE_STRING:
                continue
            valfmt = result.contents.get_valfmt(i)
            for j in range(result.contents.get_numval(i)):
                atom = context.pmExtractValue(
                    valfmt, result.contents.get_vlist(i, j), desc.contents.type, pmapi.c_api.PM_TYPE_DOUBLE
                )
                instance = ""
                if desc.contents.indom != pmapi.c_api.PM_INDOM_NULL:
                    key = (desc.contents.indom, result.contents.get_inst(i, j))
                    if key not in instances:
                        try:
                            instances[key] = context.pmNameInDomArchive(desc, key[1])
                        except pmapi.pmErr:
                            instances[key] = str(key[1])
                    instance = instances[key]
                writer.writerow((t, name, instance, repr(atom.d)))
        context.pmFreeResult(result)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
