"""The gRPC service of nasname: contract translation (servicer, convert), authentication and roles (auth,
interceptor), the error table (errors), configuration and TLS, the ``nasname`` CLI and a Python client.

    from server.client import Client, image_sample          # stations and scripts
    from server.app import create_server, serve             # embedding and `nasname serve`
"""
