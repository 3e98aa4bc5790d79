#!/usr/bin/perl
# sa_score.pl: SpamAssassin's score for each message file named on standard
# input (one path a line), for bench_spam.py: "PATH<TAB>SCORE<TAB>0|1<TAB>TESTS"
# per message on standard output (1: is spam at SpamAssassin's
# required_score). Uses the Mail::SpamAssassin API (what spamassassin -L does
# per message, with the rules loaded once): the stock rules and site config,
# local tests only (no DNS, Razor, Pyzor, DCC), Bayes from BAYES_PATH
# (learned beforehand with sa-learn --dbpath), no autolearn, no user prefs.
# Usage: sa_score.pl BAYES_PATH < list
use strict;
use warnings;
use Mail::SpamAssassin;

my $bayes = shift or die "usage: sa_score.pl BAYES_PATH < list\n";
my $sa = Mail::SpamAssassin->new({
	local_tests_only => 1,
	dont_copy_prefs => 1,
	userprefs_filename => '/dev/null',
	post_config_text => "use_bayes 1\nbayes_path $bayes\nbayes_auto_learn 0\nbayes_auto_expire 0\n"
	    . "lock_method flock\n",
});
$sa->compile_now(0);
$| = 1;
while (my $path = <STDIN>) {
	chomp $path;
	open(my $fh, '<', $path) or die "$path: $!\n";
	my @lines = <$fh>;
	close $fh;
	my $mail = $sa->parse(\@lines);
	my $status = $sa->check($mail);
	printf "%s\t%.3f\t%d\t%s\n", $path, $status->get_score(), $status->is_spam() ? 1 : 0,
	    $status->get_names_of_tests_hit();
	$status->finish();
	$mail->finish();
}
