"""The web console for adjudicators, investigators and ops (served by ``nasname serve`` over HTTPS).

``app`` (Starlette application and pages), ``access`` (page -> RPC permission), ``sessions`` (cookie
sessions, login limiter), ``images`` (display and unwrapped-iris images), ``reports`` (the registration
report's files as responses), ``serving`` (uvicorn in a thread), ``config`` (the ``[web]`` settings).
Templates and static files ship inside the package: no CDN, no build step.
"""
