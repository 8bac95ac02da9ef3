"""The HTTP side: routes, errors, authentication, paging and filters."""
