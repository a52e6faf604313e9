"""mdm-sync local stack: the whole pipeline on one machine (issue 6).

moto_server for AWS, Reltio and Salesforce simulators, the real release binaries under a Lambda Runtime API
host, event-source pollers that follow the Lambda rules, a workload generator and an invariant-checking report.
"""
