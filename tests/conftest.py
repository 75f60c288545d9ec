pytest_plugins = ["tests.fixtures.servers", "tests.fixtures.bgq", "tests.fixtures.stores", "tests.fixtures.stacks", "tests.fixtures.hosts"]
