"""Join the API's answers and find problems: pure functions of rows, policy and `now`."""
